"""Token datasets (theory section 12): words from the CMU dictionary's plain text, procedural brackets with an
exact checker, any UTF-8 text file; splits, sizes and every error."""
import pytest
import torch

from ablate.data import TokenDataset, bracket_break, load_dataset
from ablate.data.tokens import make_brackets


def test_words_are_letters_and_an_end_symbol_split_by_word():
    data = load_dataset("words", n=500)
    assert isinstance(data, TokenDataset) and data.vocab_size == 27 and data.vocab[-1] == "." and data.shape == (12,)
    assert data.train.dtype == torch.int64 and data.train.shape == (500, 12)
    train, held = set(data.decode(data.train)), set(data.decode(data.heldout))
    assert len(train) == 500 and not train & held  # each word once, on one side
    assert all(w.isalpha() and w.islower() and 1 <= len(w) <= 12 for w in train | held)
    assert {"cat", "house"} <= set(data.decode(load_dataset("words").train)) | held | set(
        data.decode(load_dataset("words").heldout))
    # the end symbol fills every position after the word
    row = data.train[0]
    end = data.end
    first = int((row == end).nonzero()[0]) if (row == end).any() else 12
    assert (row[first:] == end).all() and (row[:first] < 26).all()
    # deterministic, and a smaller n is a prefix of a larger one
    again = load_dataset("words", n=200)
    assert torch.equal(again.train, data.train[:200]) and torch.equal(again.heldout, data.heldout)
    short = load_dataset("words", n=100, length=5)
    assert short.shape == (5,) and all(len(w) <= 5 for w in short.decode(short.train))
    with pytest.raises(ValueError, match="n=10000000 is larger than the"):
        load_dataset("words", n=10_000_000)


def test_bracket_checker_known_answers():
    assert bracket_break("(()[])") is None and bracket_break("") is None
    assert bracket_break("(]") == 1  # a closer of the wrong kind
    assert bracket_break("())(") == 2  # a closer with nothing open
    assert bracket_break("(()") == 3  # left open at the end
    assert bracket_break("(a)") == 1  # not a bracket
    assert bracket_break("([)]") == 2


def test_brackets_are_balanced_and_of_even_length():
    texts = make_brackets(300, 10, 2, seed=3)
    assert all(bracket_break(t) is None and len(t) % 2 == 0 and 2 <= len(t) <= 10 for t in texts)
    assert any("[" in t for t in texts) and any("(" in t for t in texts)
    assert len({len(t) for t in texts}) == 5  # every even length up to 10 occurs
    one = load_dataset("brackets", count=200, bracket_kinds=1, length=8)
    assert one.vocab == ("(", ")", ".") and one.shape == (8,) and len(one.train) + len(one.heldout) == 200
    assert all(bracket_break(t, "()") is None for t in one.decode(one.train))


def test_text_files_and_their_errors(tmp_path):
    good = tmp_path / "lines.txt"
    good.write_text("héllo\nworld\n\nab cd\n", encoding="utf-8")
    data = load_dataset("text", path=str(good), heldout_fraction=0.0)
    assert data.shape == (5,) and set(data.decode(data.train)) == {"héllo", "world", "ab cd"}
    assert data.vocab[-1] == "." and "é" in data.vocab
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(ValueError, match="holds no non-blank line"):
        load_dataset("text", path=str(empty))
    latin = tmp_path / "latin.txt"
    latin.write_bytes("ok\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"is not UTF-8: byte 6 \(line 2\)"):
        load_dataset("text", path=str(latin))
    with pytest.raises(ValueError, match="line 1 has 5 characters; at most length=3 fit"):
        load_dataset("text", path=str(good), length=3)
    with pytest.raises(ValueError, match="reads from disk: set path="):
        load_dataset("text")
    with pytest.raises(ValueError, match="image_size applies to images; 'words' holds token sequences"):
        load_dataset("words", image_size=8)
