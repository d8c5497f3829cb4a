"""A dataset saved by ``datasets``' ``save_to_disk`` is a folder, not a file: a ``Dataset``'s folder
holds its Arrow files (listed in ``state.json``) and a ``DatasetDict``'s a folder per split (listed
in ``dataset_dict.json``). Such a folder, named where a data file is expected, is read as its split's
Arrow files joined into one stream; any other folder gets an error naming the data files in it.
"""
from __future__ import annotations

import json
from pathlib import Path

from .base import DATA_SUFFIXES
from .parquet import arrow_batches

SAVED_LISTINGS = ("state.json", "dataset_info.json", "dataset_dict.json")
"""What ``save_to_disk`` writes beside the data: never training data itself."""


def saved_split(folder: Path, split: str = "train") -> Path | None:
    """The folder of ``split`` in a saved ``DatasetDict`` (None when it has none, or ``folder`` is no
    ``DatasetDict``)."""
    splits = _splits(folder)
    return folder / split if split in splits else None


def saved_files(folder: Path, split: str = "train") -> list[Path]:
    """The Arrow files of a saved dataset: ``folder`` is a ``Dataset``'s folder, or a ``DatasetDict``'s
    (then its ``split``, or its only split). Raises ``ValueError`` with what to say after "the folder ...":
    for any other folder, it names the data files and saved datasets in it."""
    splits = _splits(folder)
    if splits:
        if split not in splits and len(splits) > 1:
            named = ", ".join(splits)
            raise ValueError(f"is a DatasetDict saved by datasets with the splits {named} and none named {split}: "
                             f"name one, as {folder / splits[0]}")
        folder = folder / (split if split in splits else splits[0])
    state = folder / "state.json"
    if not state.is_file():
        inside = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(DATA_SUFFIXES)
                        and p.name not in SAVED_LISTINGS)
        inside += sorted(p.name + "/" for p in folder.iterdir() if p.is_dir() and (
            (p / "state.json").is_file() or (p / "dataset_dict.json").is_file()))
        listed = f" in it ({', '.join(inside[:5])}{', ...' if len(inside) > 5 else ''})" if inside else ""
        raise ValueError("is not a data file, nor a dataset saved by datasets' save_to_disk: name a data file or a "
                         f"saved dataset{listed}")
    try:
        names = [entry["filename"] for entry in json.loads(state.read_text(encoding="utf-8"))["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"is a dataset saved by datasets whose {state.name} cannot be read "
                         f"({type(exc).__name__}: {str(exc)[:80]})") from None
    outside = [name for name in names if not isinstance(name, str) or Path(name).name != name or name in ("", ".", "..")]
    if outside:
        raise ValueError(f"is a dataset saved by datasets whose {state.name} names a file outside it: {outside[0]!r}")
    files = [folder / name for name in names]
    missing = [f.name for f in files if not f.is_file()]
    if missing or not files:
        raise ValueError(f"is a dataset saved by datasets whose data file {missing[0]} is missing" if missing
                         else "is a dataset saved by datasets with no data file")
    return files


def joined_arrow(files: list[Path]) -> bytes:
    """One Arrow stream of the record batches of ``files`` (the shards of one split: their columns must
    match). A single file is returned as it is."""
    if len(files) == 1:
        return files[0].read_bytes()
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    write_joined_arrow(files, sink, [f.name for f in files])
    return sink.getvalue().to_pybytes()


def write_joined_arrow(files: list[Path], sink, names: list[str]) -> None:
    """The record batches of the Arrow files ``files`` (streams or files; ``names`` to name them in errors)
    written to ``sink`` (a pyarrow stream) as one Arrow stream, a batch at a time. Raises ``ValueError``
    with what to say after "the folder ..."."""
    import pyarrow as pa
    import pyarrow.ipc  # noqa: F401  (pa.ipc)

    writer, schema, name = None, None, names[0]
    try:
        for path, name in zip(files, names):
            with pa.memory_map(str(path)) as source:
                file_format = source.read(6) == b"ARROW1"
                source.seek(0)
                reader, batches = arrow_batches(pa, source, file_format)
                if writer is None:
                    schema = reader.schema
                    writer = pa.ipc.new_stream(sink, schema)
                elif not reader.schema.equals(schema, check_metadata=False):
                    differ = (f"{', '.join(reader.schema.names)} against {', '.join(schema.names)}"
                              if reader.schema.names != schema.names else "the same names, of other types")
                    raise ValueError(f"holds {names[0]} and {name}, whose columns differ ({differ}), so they are "
                                     "not shards of one table")
                for batch in batches:
                    writer.write_batch(batch)
        writer.close()
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"holds {name}, which is not an Arrow table that can be read "
                         f"({type(exc).__name__}: {str(exc)[:80]})") from None


def _splits(folder: Path) -> list[str]:
    """The splits a saved ``DatasetDict`` lists (none where ``folder`` is no ``DatasetDict``)."""
    listing = folder / "dataset_dict.json"
    if not listing.is_file():
        return []
    try:
        splits = json.loads(listing.read_text(encoding="utf-8"))["splits"]
    except (OSError, ValueError, KeyError, TypeError):
        splits = None
    if not isinstance(splits, list):
        splits = sorted(p.name for p in folder.iterdir() if (p / "state.json").is_file())
    return [str(s) for s in splits if (folder / str(s)).is_dir()]
