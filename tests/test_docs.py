"""The README stands alone: every link and picture it (or docs/) names exists inside the repository."""
import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_readme_and_docs_links_resolve_inside_the_repository():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "configs").glob("*.md"))]
    checked = 0
    for page in pages:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path = (page.parent / target).resolve()
            assert path.exists(), f"{page.name} links to {target}, which is not in the repository"
            assert ROOT.resolve() in path.parents or path == ROOT.resolve(), f"{page.name}: {target} leaves the repo"
            checked += 1
        assert "../shared" not in text, f"{page.name} points outside the repository"
    assert checked >= 5


def test_every_command_file_the_readme_names_exists():
    text = (ROOT / "README.md").read_text()
    names = set(re.findall(r"(?:sweeps|configs|benchmarks)/[\w.]+\.(?:yaml|py)", text))
    assert len(names) >= 5
    for name in names:
        if re.search(r"/[A-Z]+\.", name):  # a placeholder such as sweeps/X.yaml
            continue
        assert (ROOT / name).exists(), f"README names {name}, which does not exist"
