"""The files of a Hub dataset that training reads: a split's file, or its shards joined into one.

The Hub stores a dataset's splits as Parquet files (``data/train-00000-of-00001.parquet``), a large
split in shards (``data/train_sft-00000-of-00003-<hash>.parquet``, and in the Hub's Parquet conversion
``default/train/0000.parquet``). One listing of the repository finds the training split's files and the
validation split's; shards of one split are downloaded and joined into one file (Parquet 1,024 rows at
a time, Arrow a record batch at a time, JSON Lines, JSON lists, CSV and TSV a megabyte at a time), so
the join never holds a whole shard. The user's token
serves the call only (see ``convo.hub``). Example: ``dataset_files("stanfordnlp/coqa").train``.
"""
from __future__ import annotations

import gzip
import json
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from .data.saved import SAVED_LISTINGS, write_joined_arrow
from .hub import HubError, _api, _hub_errors, hub_endpoint, resolve_token, validate_repo_id

__all__ = ["DATA_FILE_SUFFIXES", "DataFiles", "data_file_or_dataset", "dataset_files", "dataset_source", "fetch_named",
           "on_the_hub"]

DATA_FILE_SUFFIXES = (".parquet", ".arrow", ".jsonl", ".json", ".csv", ".tsv", ".jsonl.gz", ".json.gz", ".csv.gz",
                      ".tsv.gz")
_SUFFIX_WORDS = ".parquet, .arrow, .jsonl, .json, .csv or .tsv (also gzipped)"
_JOIN_ROWS = 1024
"""Rows read and written at a time when shards are joined: 3 shards of one 53 MB row group each (3 MB
compressed) joined in 0.24 s with 100 MB more resident memory, where a row group at a time took 190 MB."""
_FETCH_ROOT = "convo-hub-data"
_FETCHES_KEPT = 8
_SHARD = re.compile(r"^(?P<stem>.+?)-\d{3,6}-of-\d{3,6}(?:-[^/.]*)?\.\w+(?:\.gz)?$")
"""A shard's name, as ``datasets`` writes it: ``train-00000-of-00003.parquet``, with a hash after it on the Hub."""


@dataclass(frozen=True)
class DataFiles:
    """What one fetch downloaded: the training file, and the validation split's when the dataset has one."""

    train: Path
    validation: Path | None = None
    note: str | None = None
    """Why no validation file came with it although the dataset may have one (it is over the cap, in
    several splits, or its download failed); None when it came or the dataset has none."""
    train_parts: int = 1
    """Files joined into ``train`` (a split in shards)."""
    validation_parts: int = 1


def dataset_files(source: str, *, split: str = "train", token: str | None = None, max_bytes: int | None = None,
                  validation: bool = True) -> DataFiles:
    """Download the data of a Hub dataset: ``split``'s file and (with ``validation``, for a dataset
    named by its id) the validation split's, from one listing of the repository.

    ``source`` is ``user/name`` (the files of ``split``: the paths with it as a part of their names,
    such as ``data/train-00000-of-00001.parquet``; a dataset with one data file gives that one),
    ``user/name/path/in/repo.parquet``, the start of some files' paths (``user/name/data/train_sft``:
    the shards whose names begin with it), or an address on the Hub. A split in shards is joined into
    one file. ``max_bytes`` refuses more than that before anything is downloaded. The files land in a
    fresh folder of the system's temp directory (the app serves files from there); the oldest of these
    folders beyond the last few are removed. Raises :class:`HubError` when ``split`` gives no data;
    a validation split that cannot be fetched is a ``note``, and the training file stands.
    """
    repo_id, revision, path = dataset_source(source)
    token = resolve_token(token)
    with _hub_errors(token=token, repo_id=repo_id, writing=False):
        files = {entry.path: getattr(entry, "size", None) or 0
                 for entry in _api(token).list_repo_tree(repo_id, recursive=True, revision=revision,
                                                         repo_type="dataset")
                 if hasattr(entry, "size")}
        train = _named_files(repo_id, files, path) if path else _split_files(repo_id, files, split)
        _check_size(repo_id, files, train, max_bytes)
        folder = Path(_fetch_folder())
        train_path = _download(repo_id, revision, train, folder, token)
    val: list[str] = []
    note = None
    if validation and not path:
        try:
            val = [f for f in _split_files(repo_id, files, "validation", alone_ok=False) if f not in train]
            _check_size(repo_id, files, val, max_bytes)
            with _hub_errors(token=token, repo_id=repo_id, writing=False):
                # a folder of its own: two splits' joined files may have one name (save_to_disk's "data" shards)
                val_path = _download(repo_id, revision, val, folder / "validation", token) if val else None
        except HubError as exc:
            val, val_path, note = [], None, str(exc)
    else:
        val_path = None
    return DataFiles(train_path, val_path, note, len(train), len(val) or 1)


_HUB_SHAPED = re.compile(r"^(?:https?://\S+|[A-Za-z0-9][\w.-]*/[\w.-]+(?:/\S*)?)$")


def data_file_or_dataset(source: str, *, split: str = "train", token: str | None = None) -> str:
    """``source`` when it is a file here (or does not look like a Hub name); else the Hub dataset or
    file it names, downloaded with no size cap (named on one's own machine, as ``--train_data``).
    Raises :class:`HubError` saying both when it is neither a file here nor on the Hub.

    >>> data_file_or_dataset("/no/such/train.json")  # a path: the reader says it is missing
    '/no/such/train.json'
    """
    if not on_the_hub(source):
        return str(source)
    return str(fetch_named(source, split=split, token=token, validation=False).train)


def fetch_named(source: str, **kwargs) -> DataFiles:
    """:func:`dataset_files` for a name given where a file is expected (not a file here): its error
    says that it is neither a file here nor on the Hub."""
    try:
        return dataset_files(str(source).strip(), **kwargs)
    except HubError as exc:
        raise HubError(f"{str(source).strip()} is not a file here, and on the Hub: {exc}") from None


def on_the_hub(source: str) -> bool:
    """Whether ``source`` names no file here and looks like a Hub dataset's id, path or address."""
    text = str(source).strip()
    return not Path(text).exists() and bool(_HUB_SHAPED.match(text))


def dataset_source(source: str) -> tuple[str, str | None, str | None]:
    """(repo id, revision, path in the repo) of what a user typed: an id, an id and a path, or an address.

    >>> dataset_source("https://huggingface.co/datasets/stanfordnlp/coqa/blob/main/data/train-00000-of-00001.parquet")
    ('stanfordnlp/coqa', 'main', 'data/train-00000-of-00001.parquet')
    >>> dataset_source(" rajpurkar/squad ")
    ('rajpurkar/squad', None, None)
    >>> dataset_source("https://huggingface.co/datasets/a/b/resolve/refs%2Fconvert%2Fparquet/default/train/0000.parquet")
    ('a/b', 'refs/convert/parquet', 'default/train/0000.parquet')
    """
    text = (source or "").strip()
    if not text:
        raise HubError("Type a dataset's id, such as stanfordnlp/coqa, or the address of one of its files.")
    text = re.sub(r"^https?://[^/]+/(?:datasets/)?", "", text).split("?")[0].strip("/")
    parts = text.split("/")
    if len(parts) < 2:  # "squad", "coqa": the Hub's datasets are named with their owner
        raise HubError(f"'{text}' is not a dataset's id: expected owner/name, such as stanfordnlp/coqa or "
                       "rajpurkar/squad.")
    revision = None
    if len(parts) > 3 and parts[2] in ("blob", "resolve", "tree"):
        revision, rest = parts[3], parts[4:]
    else:
        rest = parts[2:]
    repo_id = validate_repo_id("/".join(parts[:2]))
    return repo_id, revision and unquote(revision), unquote("/".join(rest)) or None


def _split_of(path: str) -> str:
    """The split a data file belongs to: the part of its path before the shard numbers, or its folder
    for the Hub's ``default/train/0000.parquet``; a file that is no shard is a split of its own.

    >>> _split_of("data/train_sft-00001-of-00003-5e9a.parquet"), _split_of("default/train/0001.parquet")
    ('data/train_sft', 'default/train')
    >>> _split_of("data/train-00000-of-00002.jsonl.gz")
    'data/train'
    """
    shard = _SHARD.match(path)
    if shard:
        return shard["stem"]
    folder, _, name = path.rpartition("/")
    return folder if folder and re.fullmatch(r"\d+\.\w+", name) else path


def _grouped(paths: Sequence[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for path in sorted(paths):
        groups.setdefault(_split_of(path), []).append(path)
    return groups


def _one_split(repo_id: str, groups: Mapping[str, list[str]], what: str) -> list[str]:
    """The files of the one split in ``groups``; an error naming them when there are several."""
    if len(groups) == 1:
        [files] = groups.values()
        kinds = {_joined_suffix(f) for f in files}
        if len(files) > 1 and (len(kinds) > 1 or None in kinds):
            listed = ", ".join(files[:5]) + (", ..." if len(files) > 5 else "")
            raise HubError(f"The dataset {repo_id} has {len(files)} files for {what} ({listed}), and only files of "
                           f"one kind are joined (gzipped JSON files are not): name one, as {repo_id}/{files[0]}.")
        return files
    listed = ", ".join(f"{name} ({len(files)} file{'s' * (len(files) > 1)})"
                       for name, files in list(groups.items())[:5])
    first = next(iter(groups))
    raise HubError(f"The dataset {repo_id} has {len(groups)} splits for {what} ({listed}"
                   f"{', ...' if len(groups) > 5 else ''}): name one, as {repo_id}/{first}.")


def _split_files(repo_id: str, files: Mapping[str, int], split: str, alone_ok: bool = True) -> list[str]:
    """The data files of ``split`` (its shards, or its one file); with no file named for it, the
    dataset's only data file when ``alone_ok``, else none."""
    data = sorted(path for path in files if _is_data(path))
    named = [path for path in data if re.search(rf"(?:^|[/_.-]){re.escape(split)}(?:[/_.-]|$)", path.lower())]
    if named:
        return _one_split(repo_id, _grouped(named), f"its {split} split")
    if not alone_ok:
        return []
    if not data:
        raise HubError(f"The dataset {repo_id} has no {_SUFFIX_WORDS} file.")
    groups = _grouped(data)
    if len(groups) == 1:
        return _one_split(repo_id, groups, "its data")
    listed = ", ".join(data[:5]) + (", ..." if len(data) > 5 else "")
    raise HubError(f"The dataset {repo_id} has {len(data)} data files and none named {split} ({listed}): name one, "
                   f"as {repo_id}/{data[0]}.")


def _named_files(repo_id: str, files: Mapping[str, int], path: str) -> list[str]:
    """The file ``path`` names, or the shards of the one split whose paths begin with it."""
    if path in files:
        if not path.lower().endswith(DATA_FILE_SUFFIXES):
            raise HubError(f"{path} is not a data file training reads: name a {_SUFFIX_WORDS} file.")
        return [path]
    start = path.rstrip("/")
    under = [f for f in files if _is_data(f) and f.startswith(start)
             and f[len(start):len(start) + 1] in ("/", "-", "_")]
    if not under:
        raise HubError(f"The dataset {repo_id} has no file {path}.")
    groups = _grouped(under)
    return _one_split(repo_id, {start: groups[start]} if start in groups else groups, path)


def _check_size(repo_id: str, files: Mapping[str, int], paths: Sequence[str], max_bytes: int | None) -> None:
    size = sum(files[p] for p in paths)
    if max_bytes is not None and size > max_bytes:
        what = f"{repo_id}/{paths[0]}" if len(paths) == 1 else f"{repo_id}/{_split_of(paths[0])} ({len(paths)} files)"
        raise HubError(f"{what} is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB limit of the app: download "
                       "it and train from the command line, which reads files of any size "
                       "(python -m training.finetune --train_data FILE).")


def _download(repo_id: str, revision: str | None, paths: Sequence[str], folder: Path, token: str | None) -> Path:
    """The files into ``folder``: one as it is, shards joined into one file named after their split."""
    from huggingface_hub import hf_hub_download

    local = [Path(hf_hub_download(repo_id, path, repo_type="dataset", revision=revision, local_dir=folder,
                                  endpoint=hub_endpoint(), token=token if token else False)) for path in paths]
    if len(local) == 1:
        return local[0]
    suffix = _joined_suffix(paths[0])
    split = Path(_split_of(paths[0]))
    # save_to_disk names every split's shards "data-...": the split is the folder they are in
    joined = folder / f"{split.parent.name if split.name == 'data' and split.parent.name else split.name}{suffix}"
    try:
        _JOINERS[suffix](local, joined, paths)
    finally:
        for part in local:  # the shards are in the joined file (or it failed): no second copy on disk
            part.unlink(missing_ok=True)
    return joined


def _join_parquet(parts: Sequence[Path], out: Path, names: Sequence[str]) -> None:
    """Parquet files of one table into one, ``_JOIN_ROWS`` rows at a time (their columns must match)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    name = names[0]
    try:
        for part, name in zip(parts, names):
            table_file = pq.ParquetFile(part)
            if writer is None:
                writer = pq.ParquetWriter(out, table_file.schema_arrow)
            elif not table_file.schema_arrow.equals(writer.schema, check_metadata=False):
                theirs, first = ", ".join(table_file.schema_arrow.names), ", ".join(writer.schema.names)
                raise HubError(f"{name} has other columns than {names[0]}, so they are not shards of one table "
                               f"({theirs} against {first}).")
            for batch in table_file.iter_batches(batch_size=_JOIN_ROWS):
                writer.write_table(pa.Table.from_batches([batch]).cast(writer.schema))
        writer.close()
    except BaseException as exc:
        if writer is not None and writer.is_open:
            writer.close()
        out.unlink(missing_ok=True)
        if isinstance(exc, (pa.ArrowException, OSError)):
            raise HubError(f"{name} is not a Parquet table that can be read ({type(exc).__name__}: "
                           f"{str(exc)[:120]})") from None
        raise


def _join_lines(parts: Sequence[Path], out: Path, names: Sequence[str]) -> None:
    """JSON Lines files into one, each ending its last line."""
    try:
        with open(out, "wb") as sink:
            for part in parts:
                with open(part, "rb") as source:
                    shutil.copyfileobj(source, sink)
                    if source.tell() and (source.seek(-1, 2), source.read(1))[1] != b"\n":
                        sink.write(b"\n")
    except BaseException:
        out.unlink(missing_ok=True)
        raise


def _join_gzipped_lines(parts: Sequence[Path], out: Path, names: Sequence[str]) -> None:
    """Gzipped JSON Lines files into one without unpacking them: a gzip file may hold members one after
    another, and a member holding a line break between two ends a last line that had none (a blank line
    more, where one had it, is skipped when read)."""
    try:
        with open(out, "wb") as sink:
            for i, part in enumerate(parts):
                if i:
                    sink.write(gzip.compress(b"\n", mtime=0))
                with open(part, "rb") as source:
                    shutil.copyfileobj(source, sink)
    except BaseException:
        out.unlink(missing_ok=True)
        raise


def _join_arrow(parts: Sequence[Path], out: Path, names: Sequence[str]) -> None:
    """Arrow files of one table (a split that ``datasets`` saved in shards) into one stream, a record batch at a time."""
    import pyarrow as pa

    try:
        with pa.OSFile(str(out), "wb") as sink:
            write_joined_arrow(list(parts), sink, list(names))
    except BaseException as exc:
        out.unlink(missing_ok=True)
        if isinstance(exc, ValueError):
            raise HubError(f"The split {exc}.") from None
        raise


def _join_tables(parts: Sequence[Path], out: Path, names: Sequence[str]) -> None:
    """CSV or TSV files of one table (gzipped or not, as their names say) into one, whose header row is the
    first file's: each later file's header must be the same, and is left out."""
    opener = gzip.open if out.name.lower().endswith(".gz") else open
    name = names[0]
    try:
        with opener(out, "wb") as sink:
            first = b""
            for i, (part, name) in enumerate(zip(parts, names)):
                with opener(part, "rb") as source:
                    header = _header_record(source)
                    names_row = header.removeprefix(_BOM).rstrip(b"\r\n")
                    if i and names_row != first:
                        raise HubError(f"{name} has another header row than {names[0]}, so they are not shards of "
                                       f"one table ({_shown(header)} against {_shown(first)}).")
                    if not i:
                        first = names_row
                        sink.write(header)
                    end = header
                    while chunk := source.read(1 << 20):
                        sink.write(chunk)
                        end = chunk
                    if end and not end.endswith(b"\n"):  # a last row without its line break
                        sink.write(b"\n")
    except BaseException as exc:
        out.unlink(missing_ok=True)
        if isinstance(exc, (gzip.BadGzipFile, EOFError)):
            raise HubError(f"{name} cannot be read as a table ({type(exc).__name__}: {str(exc)[:120]})") from None
        if isinstance(exc, OSError) and not isinstance(exc, HubError):
            raise HubError(f"The shards could not be joined at {name} ({type(exc).__name__}: {str(exc)[:120]})") from None
        raise


def _join_json(parts: Sequence[Path], out: Path, names: Sequence[str]) -> None:
    """JSON shards into one: JSON Lines (what ``datasets``' ``to_json`` writes, named ``.json``) line by line,
    lists of records into one list; a shard that is one JSON object (CoQA's ``{"data": [...]}``) is not a
    part of a table, and is named."""
    kinds = [_json_kind(part) for part in parts]
    # a shard of one line is one record of JSON Lines beside shards of several, else one object on a line
    kinds = [("lines" if "lines" in kinds else "object") if kind == "one line" else kind for kind in kinds]
    for kind, name in zip(kinds, names):
        if kind != kinds[0] or kind == "object":
            where = "" if kind == "object" else f" where {names[0]} is {_JSON_WORDS[kinds[0]]}"
            raise HubError(f"{name} is {_JSON_WORDS[kind]}{where}, so the shards are not joined: name one.")
    if kinds[0] == "lines":
        _join_lines(parts, out, names)
        return
    try:
        with open(out, "wb") as sink:
            sink.write(b"[")
            wrote = False
            for part in parts:
                with open(part, "rb") as source:
                    start, end = _list_bounds(source)
                    source.seek(start + 1)
                    inner = source.read(min(end - start - 1, 64))
                    if inner.strip():  # not an empty list
                        sink.write(b"," * wrote + inner)
                        _copy_bytes(source, sink, end - start - 1 - len(inner))
                        wrote = True
            sink.write(b"]\n")
    except BaseException:
        out.unlink(missing_ok=True)
        raise


def _json_kind(path: Path) -> str:
    """"list" for a JSON list, "lines" for JSON Lines (its first line one whole JSON value, and another
    line after it), "one line" for one JSON value on one line (a record of JSON Lines, or a compact
    object), else "object" (pretty-printed). A first line over ``_LINE_PEEK`` bytes is not read whole:
    such a shard is taken for one object."""
    with open(path, "rb") as source:
        first = _next_line(source, first=True)
        if first.lstrip().startswith(b"["):
            return "list"
        if len(first) >= _LINE_PEEK and not first.endswith(b"\n"):
            return "object"
        second = _next_line(source)
    try:
        json.loads(first)
    except ValueError:
        return "object"
    return "lines" if second else "one line"


_LINE_PEEK = 1 << 20
_JSON_WORDS = {"lines": "JSON Lines", "list": "a JSON list", "object": "one JSON object"}
"""What each kind of JSON shard (``_json_kind``, one line resolved) is called in errors."""
_BOM = b"\xef\xbb\xbf"


def _next_line(source, first: bool = False) -> bytes:
    """The next line of ``source`` that is not blank (at most ``_LINE_PEEK`` bytes of it; ``first``: the
    file's start, without a byte-order mark), or b"" at its end."""
    line = source.readline(_LINE_PEEK)
    if first:
        line = line.removeprefix(_BOM)
    while line and not line.strip():
        line = source.readline(_LINE_PEEK)
    return line


def _list_bounds(source) -> tuple[int, int]:
    """The offsets of a JSON list's opening and closing brackets in ``source`` (whitespace and a byte-order
    mark around them)."""
    head = source.read(64)
    start = len(head) - len(head.removeprefix(_BOM).lstrip())
    size = source.seek(0, 2)
    source.seek(max(0, size - 64))
    tail = source.read()
    end = size - (len(tail) - len(tail.rstrip())) - 1
    source.seek(end)
    if head[start:start + 1] != b"[" or source.read(1) != b"]" or end <= start:
        raise HubError(f"{Path(source.name).name} is not a whole JSON list: its last bracket is missing.")
    return start, end


def _copy_bytes(source, sink, count: int) -> None:
    while count > 0 and (chunk := source.read(min(count, 1 << 20))):
        sink.write(chunk)
        count -= len(chunk)


def _header_record(source) -> bytes:
    """The first record of a CSV file, with its line break: one line, or several where a quoted name holds one."""
    header = source.readline()
    while header.count(b'"') % 2 and (more := source.readline()):
        header += more
    return header


def _shown(header: bytes) -> str:
    text = header.decode("utf-8", "replace").strip()
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _joined_suffix(path: str) -> str | None:
    """The suffix of ``_JOINERS`` that ``path`` ends with (None: such files are not joined)."""
    return next((s for s in _JOINERS if path.lower().endswith(s)), None)


def _is_data(path: str) -> bool:
    """A file training may read: a data file by its suffix, and not one of ``save_to_disk``'s listings (a
    saved dataset pushed as it is)."""
    return path.lower().endswith(DATA_FILE_SUFFIXES) and path.rpartition("/")[2] not in SAVED_LISTINGS


_JOINERS = {".parquet": _join_parquet, ".arrow": _join_arrow, ".jsonl": _join_lines, ".jsonl.gz": _join_gzipped_lines,
            ".json": _join_json, ".csv": _join_tables, ".tsv": _join_tables, ".csv.gz": _join_tables,
            ".tsv.gz": _join_tables}
"""The shards joined into one file, by suffix, and how each kind is joined (other shards are named one by one)."""


def _fetch_folder() -> str:
    """A fresh folder for one download, under the system's temp directory; the oldest go past the last few."""
    root = Path(tempfile.gettempdir()) / _FETCH_ROOT
    root.mkdir(exist_ok=True)
    old = sorted(root.iterdir(), key=lambda folder: folder.stat().st_mtime)
    for folder in old[: max(0, len(old) - _FETCHES_KEPT + 1)]:
        shutil.rmtree(folder, ignore_errors=True)
    return tempfile.mkdtemp(dir=root)
