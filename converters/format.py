"""The interface every format implements: one `Format` record per format module.

A format module reads a file into the canonical `Store` and writes a `Store` back, and declares
everything else weightkit needs to know about it in its record, `FORMAT = Format(...)`:

    FORMAT = Format(
        name="safetensors", description="safetensors",
        sniff=sniff, read=read, plan=plan, write=write,
        suffixes=(".safetensors",), git_patterns=("*.safetensors",),
    )

Nothing outside a format's own module knows its internals: the registry
(`converters/registry.py`), `losses()` of other writers, `weightkit git-config`, the git diff
driver and `wdiff --index-only` read these records. Built-in formats are listed by module in
the registry; third-party formats register an object of this type (or a module defining
`FORMAT`) under the entry-point group `weightkit.formats`.

Writing is planned once: `plan(store, like)` returns a `WritePlan` holding what the write would
lose, what it refuses outright, and the format's own layout; `losses`, `--dry-run`, `check` and
`save` all use that plan, and `write(plan, path)` carries it out atomically. A plan made by
`WritePlan.of` lays the file out when its refusal or layout is first asked for: asking only what
a write would lose (`verify` choosing its formats) costs no layout.

**Templates (`like`).** One precedence rule in every writer: with a template, the file structure
written (layout, keys, object graph, model config, every attribute) is the template's, and the
values are the store's, paired by canonical name. A template variable the store lacks is written
from the template only if it is optimizer state or a counter (role `optimizer` or `counter`; a
fresh learning rate, say); a missing model weight, or a store variable the template has no place
for, is refused with the names. Without a template, the store's own structure is written when it
holds one in the format's namespace (`Store.meta[namespace]`), else the format's default layout.
A template without the format's namespace (a `.keras` archive for a `.weights.h5`) gives the
writer nothing: the registry refuses it before the writer sees it (`registry.template_refusal`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import WeightsError
from .store import Store


class WritePlan:
    """What writing `store` in one format would do, computed once.

    `losses`: one phrase per thing the file cannot hold (a dtype, another format's structure,
    names); the write is refused unless the caller allows losses. `refusal`: an error the write
    raises whatever the caller allows (the format cannot express the store at all). `detail`:
    the format's own plan, for its `write`. Made by `of`, the detail (and with it the refusal)
    is computed when either is first read. `notes`: what the user should know of the file the
    write makes that is not a loss (a TFLite weights container computes nothing); the command
    line says each on stderr.
    """

    def __init__(self, store: Store, like: Store | None = None, losses: list[str] | None = None,
                 refusal: WeightsError | None = None, detail: Any = None):
        self.store, self.like = store, like
        self.losses: list[str] = list(losses or [])
        self.notes: list[str] = []
        self._refusal, self._detail = refusal, detail
        self._make: tuple[Callable[[], Any], tuple[type[Exception], ...]] | None = None

    @classmethod
    def of(cls, store: Store, like: Store | None, losses: list[str],
           detail: Callable[[], Any],
           refused: tuple[type[Exception], ...] = (WeightsError,)) -> "WritePlan":
        """A plan with `losses` whose detail is `detail()`, called when the detail or the
        refusal is first read; an error of `refused` that it raises is the plan's refusal."""
        plan = cls(store, like, losses)
        plan._make = (detail, refused)
        return plan

    def _made(self) -> None:
        if self._make is not None:
            make, refused = self._make
            try:
                self._detail = make()
            except refused as exc:
                self._refusal = exc  # type: ignore[assignment]
            self._make = None  # (made, or refused: any other error is raised again next time)

    @property
    def refusal(self) -> WeightsError | None:
        self._made()
        return self._refusal

    @refusal.setter
    def refusal(self, exc: WeightsError | None) -> None:
        self._made()
        self._refusal = exc

    @property
    def detail(self) -> Any:
        self._made()
        return self._detail

    @detail.setter
    def detail(self, value: Any) -> None:
        self._make = None
        self._detail = value

    def __repr__(self) -> str:
        return (f"WritePlan(store={self.store!r}, losses={self.losses!r}, "
                f"refusal={self._refusal!r}, made={self._make is None})")


@dataclass(frozen=True)
class IndexReading:
    """A format whose index file alone records every variable's dtype, shape and a checksum
    (a TF checkpoint's `.index`): what git hands a diff driver, without the data files.

    `is_index(path)`: `path` is such an index file. `lacks_data(path)`: it is, and its data files
    are not all beside it. `read(path)`: a store of tensors whose `meta["checksum"]` is the
    recorded checksum and whose values cannot be read (reading raises `UsageError`); its
    `meta["index_checksums"]` maps what else the index checksums (e.g. "object graph") to the
    checksum, and its `format` names the index-only reading (`tf-checkpoint-index`).
    `index_of(path)`: the index file a path the user names stands for (a checkpoint prefix or
    directory), or None: `wdiff --index-only` takes what the other commands take.
    """
    is_index: Callable[[str], bool]
    lacks_data: Callable[[str], bool]
    read: Callable[[str], Store]
    index_of: Callable[[str], str | None] | None = None


@dataclass(frozen=True)
class ShardedWrite:
    """A write made of shard files, each written on its own (in any order, on any machine that
    sees the destination), and an index written last from what every shard reported: how
    `convert --scheduler` writes one shard per task and commits the index last
    (`diffing/distributed.py`). The same bytes as the format's `write`.

    files: the final path of each shard, in order. write_shard(number, target) -> facts: write
      shard `number` into the new file `target`; returns what the index needs of it (small and
      picklable: sizes, offsets, checksums). index: the final path of the index.
      write_index(facts, f): write the index into the binary file `f` from every shard's facts,
      in shard order.
    """
    files: list[str]
    write_shard: Callable[[int, str], Any]
    index: str
    write_index: Callable[[list[Any], Any], None]


@dataclass(frozen=True)
class Format:
    """Everything weightkit knows about one file format.

    name: the name users type (`--from`, `--to`), e.g. `tf-checkpoint`; aliases: other names
      accepted for it. description: one line for `--help` and error messages.
    sniff(path, head) -> bool: whether `path` (a file whose first 4 KiB are `head`, or a
      directory with `head == b""`) is in this format; cheap, never raises for foreign input.
    read(path) -> Store: open lazily; raises `WeightsError` subclasses naming `path`.
    plan(store, like) -> WritePlan, and write(plan, path): None for a read-only format.
      `write` is atomic (`converters/atomic.py`) and refuses nothing `plan` accepted.
    suffixes: lower-case name endings that ask for this format on output (the longest match
      wins) and that send an unrecognised file to this reader for a precise error.
    git_patterns: `.gitattributes` patterns `weightkit git-config` routes to the diff driver.
    namespace: the key of `Store.meta` (and `Tensor.meta`) under which this format keeps the
      file structure it needs to write the same file back; structure: the phrase naming what
      another format's writer loses of it (e.g. "the .keras archive (config.json, ...)").
    index: optional index-only reading (see `IndexReading`).
    templates: names of formats whose files serve this writer as `like` templates (empty: this
      format's own), named by the error for a template that does not serve; a store serves when
      it carries this format's namespace (as one read from such a file, or carried through
      safetensors, does).
    output_is_directory: the written path is a directory (a SavedModel).
    run(path) -> list[str]: optional, for a path that stands for the checkpoints of a training
      run (a directory with a TF `checkpoint` state file): their paths, oldest first; `weightkit
      trend DIR` reads them all.
    sharded(plan, path) -> ShardedWrite | None: optional; the write of `plan` to `path` as
      independent shards and an index written last (`ShardedWrite`), None when this plan has
      no such form (a TF checkpoint's data shards; a sharded Keras 3 `.weights.json`).
    extract(store, name) -> Store: optional; the variables of the model nested in `store`
      under `name` as a store this format writes into a file that model loads on its own
      (`weightkit extract`); `store` is of this format (or one it names in its docstring).
    current(store) -> record: optional; the store's record in this format's namespace as this
      format's writer would write it for the store (less what an edit dropped, its renames
      applied). Another format's writer carrying the namespace of an edited store
      (`carry.build`) carries this, so that the file it writes holds the same structure the
      edit made; a WeightsError (a store this writer would refuse) keeps the record as it is.
    stored_as(path) -> tuple[str, ...]: optional; the other paths that name what `path` names,
      whether or not it exists yet (a checkpoint's prefix for its `.index` or data file, a
      directory's newest checkpoint): commands refuse an output that is an input so named.
    """
    name: str
    description: str
    sniff: Callable[[str, bytes], bool]
    read: Callable[[str], Store]
    plan: Callable[[Store, Store | None], WritePlan] | None = None
    write: Callable[[WritePlan, str], None] | None = None
    suffixes: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    git_patterns: tuple[str, ...] = ()
    namespace: str | None = None
    structure: str | None = None
    index: IndexReading | None = None
    templates: tuple[str, ...] = ()
    output_is_directory: bool = False
    run: Callable[[str], list[str]] | None = None
    extract: Callable[[Store, str], Store] | None = None
    sharded: Callable[[WritePlan, str], ShardedWrite | None] | None = None
    current: Callable[[Store], Any] | None = None
    stored_as: Callable[[str], tuple[str, ...]] | None = None

    @property
    def writable(self) -> bool:
        return self.plan is not None and self.write is not None
