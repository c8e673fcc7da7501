"""ROS2 bags (rosbag2: MCAP or sqlite3) <-> episode store, with standard messages via `rosbags`.

A topic-to-stream mapping (configs/data/rosbag_topics.yaml is an example) says which topic and
message field is which stream; see `_ros_msgs` for the message conventions. Header stamps are the
timestamps (Float64MultiArray has no header: the bag's log time is used). No resampling: every
stream keeps its own samples and times, so a round trip is exact for low-dim values (float64 on the
wire) and lossless for raw images.

Episodes: export writes one bag per episode, `<out>/episode_000000/` ...; import reads one bag (a
folder with metadata.yaml, as `ros2 bag record` writes) or a folder of bags, one episode per bag,
or splits a bag where the index topic falls silent for more than `split_gap_s`.

Our exports also carry the stream specs, the mapping and each episode's metadata in the bag's
`custom_data` (metadata.yaml), so importing them restores the store as it was.

export_store(store, out, **options) options:
    topics         mapping: a YAML file path, a list of {topic, type, stream, field, names, frame},
                   or a dict with a `topics` list; streams without an entry are exported as
                   sensor_msgs/Image (frames) or std_msgs/Float64MultiArray on /<stream>; entries
                   for streams the store lacks are skipped and listed in the summary's unused_topics
    streams        streams to export; default all
    episodes       episode indices (list or "a:b"); default all committed
    storage        "mcap" (default) | "sqlite3"
    distro         message definitions, a rosbags Stores name (e.g. ROS2_HUMBLE); default ROS2_JAZZY
    time_offset_s  added to every time (ROS times cannot be negative); default 0
    overwrite      replace an existing output folder; default false

import_store(src, out_store_path, **options) options:
    topics         mapping as above; default: the one stored by our export, else every topic of a
                   supported type, named after the topic (/camera/color/image_raw -> camera_color_image_raw)
    index_stream   default: the exported one, else "action" if mapped, else the first mapped stream
    episode_split  "bag" (default: one episode per bag) | "gap"
    split_gap_s    with episode_split=gap: silence on the index topic that ends an episode; default 1.0
    time_offset_s  subtracted from every time; default: the offset used by our export, else 0
    missing        "error" (default) | "skip": a mapped topic absent from a bag
    image_codec    store codec for frames: "auto" (jpeg for uint8 RGB, png otherwise) | "png" | "jpeg"
    jpeg_quality   default 90
    distro         type store used to decode; default ROS2_JAZZY (standard messages are the same in all)
    storage        ignored on import (rosbags detects MCAP or sqlite3); accepted so one mapping file serves both
    source, task   EpisodeMeta fields for bags not written by us; default "imported", ""
    append         add the episodes to an existing store with the same streams; default false
Out-of-order or repeated stamps within a topic cannot be stored (times must increase): such messages
are skipped and counted in the episode's `extra.import_skipped` and in its notes, never silently.

CDR decoding (`decode_cdr`) also accepts the length Fast DDS gives a message (`fastdds_cdr_size`):
rmw_fastrtps sizes the buffer with its estimate, which counts 8-byte alignment after every empty
sequence of 8-byte numbers that it never writes, so e.g. rclpy's `serialize_message` of a JointState
with empty velocity/effort ends in 8 unwritten (arbitrary) bytes. Any other length is a StoreError.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import yaml

from robot_rl.core.config import load_yaml
from robot_rl.core.errors import ConfigError, StoreError
from robot_rl.core.progress import progress_bar
from robot_rl.data.convert import _common
from robot_rl.data.convert._ros_msgs import ARRAY, FIELDS, IMAGE, TopicMap, from_message, s_to_ns, to_message
from robot_rl.data.schema import EpisodeMeta, StreamSpec
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.writer import EpisodeWriter

FORMAT = "rosbag"
CUSTOM_KEY = "robot_rl"
EXPORT_OPTIONS = ("topics", "streams", "episodes", "storage", "distro", "time_offset_s", "overwrite")
IMPORT_OPTIONS = ("topics", "index_stream", "episode_split", "split_gap_s", "time_offset_s", "missing",
                  "image_codec", "jpeg_quality", "source", "task", "append", "distro", "storage")
RATE_PROBE = 200
MAPPING_DEFAULT_KEYS = ("storage", "distro", "index_stream", "episode_split", "split_gap_s", "time_offset_s")


def _typestore(distro: str):
    from rosbags.typesys import Stores, get_typestore

    try:
        return get_typestore(Stores[str(distro).upper()])
    except KeyError:
        raise ConfigError(f"distro={distro!r}: expected one of {[s.name for s in Stores]}") from None


def _align(pos: int, size: int) -> int:
    return (-pos) % size if size > 1 else 0


def fastdds_cdr_size(typestore, typename: str, message: Any, pos: int = 0) -> int:
    """End offset of `message` at payload offset `pos` as Fast DDS estimates it (the generated
    get_serialized_size of rosidl_typesupport_fastrtps): CDR layout, except that a sequence of basic
    values is aligned to its item size even when empty."""
    from rosbags.interfaces import Nodetype
    from rosbags.serde.utils import SIZEMAP

    def string(pos: int, value: str) -> int:
        return pos + _align(pos, 4) + 4 + len(value.encode()) + 1

    def items(pos: int, desc, values) -> int:
        kind, detail = desc
        if kind == Nodetype.NAME:
            for v in values:
                pos = fastdds_cdr_size(typestore, detail, v, pos)
            return pos
        if detail[0] == "string":
            for v in values:
                pos = string(pos, v)
            return pos
        size = SIZEMAP[detail[0]]
        return pos + _align(pos, size) + len(values) * size

    for name, (kind, detail) in typestore.get_msgdef(typename).fields:
        value = getattr(message, name)
        if kind == Nodetype.NAME:
            pos = fastdds_cdr_size(typestore, detail, value, pos)
        elif kind == Nodetype.BASE:
            pos = string(pos, value) if detail[0] == "string" else items(pos, (kind, detail), [value])
        else:  # ARRAY (fixed length, no prefix) or SEQUENCE (uint32 length first)
            if kind == Nodetype.SEQUENCE:
                pos += _align(pos, 4) + 4
            pos = items(pos, detail[0], value)
    return pos


def decode_cdr(typestore, raw: bytes | memoryview, msgtype: str, where: str) -> Any:
    """A CDR message decoded by rosbags; also accepted: exactly the length Fast DDS gives it (see the
    module docstring). Truncated, undecodable or otherwise sized data -> StoreError naming `where`."""
    from rosbags.serde import SerdeError

    try:
        return typestore.deserialize_cdr(raw, msgtype)
    except SerdeError as e:
        strict = e
    try:  # rosbags raises its size mismatch only after a complete decode; redo it, keeping the end offset
        if bytes(raw[:2]) not in (b"\x00\x00", b"\x00\x01") or len(raw) < 4:
            raise ValueError("encapsulation")
        msgdef = typestore.get_msgdef(msgtype)
        decode = msgdef.deserialize_cdr_le if raw[1] else msgdef.deserialize_cdr_be
        message, pos = decode(raw[4:], 0, msgdef.cls, typestore)
    except (SerdeError, struct.error, UnicodeDecodeError, ValueError, IndexError, KeyError):
        raise StoreError(f"{where}: {msgtype} CDR message of {len(raw)} bytes is truncated or corrupt "
                         f"({strict})") from None
    used = 4 + pos
    try:
        fastdds = 4 + fastdds_cdr_size(typestore, msgtype, message)
    except KeyError:  # a base type Fast DDS sizes differently (wstring): no tolerance
        fastdds = used
    if len(raw) == fastdds:
        return message
    raise StoreError(f"{where}: {msgtype} CDR message is {len(raw)} bytes, but its content ends at byte {used} "
                     f"and Fast DDS would size it {fastdds} bytes: {len(raw) - used} unexplained trailing bytes, "
                     f"the message is corrupt ({strict})")


def load_mapping(value: Any) -> tuple[list[TopicMap], dict]:
    """(topic maps, option defaults) from a YAML path, a list of entries, or a dict with `topics`."""
    where = "option topics"
    if isinstance(value, (str, Path)):
        path = Path(value)
        value = load_yaml(path)  # ConfigError naming the file when missing or not YAML
        where = str(path)
    defaults = {}
    if isinstance(value, Mapping):
        defaults = {k: v for k, v in value.items() if k in MAPPING_DEFAULT_KEYS}
        unknown = sorted(set(value) - set(MAPPING_DEFAULT_KEYS) - {"topics"})
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; known: topics, {', '.join(MAPPING_DEFAULT_KEYS)}")
        value = value.get("topics")
    if not isinstance(value, (list, tuple)) or not all(isinstance(d, Mapping) for d in value):
        raise ConfigError(f"{where}: expected a list of topic entries {{topic, type, stream, field}}")
    maps = [TopicMap.from_dict(d, where) for d in value]
    for key in ("topic", "stream"):
        seen = [getattr(m, key) for m in maps]
        dup = sorted({s for s in seen if seen.count(s) > 1})
        if dup:
            raise ConfigError(f"{where}: {key}(s) {dup} mapped more than once")
    return maps, defaults


def _auto_map(spec: StreamSpec) -> TopicMap:
    is_frame = spec.is_image and (np.dtype(spec.dtype) in (np.uint8, np.uint16) or spec.dtype == "float32")
    return TopicMap(topic=f"/{spec.name}", type=IMAGE if is_frame else ARRAY, stream=spec.name, frame=spec.frame)


# -- export -------------------------------------------------------------------------------------
def export_store(store: EpisodeStore, out: str | Path, **options: Any) -> dict:
    """Write each committed episode as one rosbag2 bag under the folder `out`."""
    from rosbags.rosbag2 import Writer
    from rosbags.rosbag2.writer import StoragePlugin

    opts = _common.check_options(FORMAT, "export", options, EXPORT_OPTIONS)
    maps, defaults = load_mapping(opts["topics"]) if opts.get("topics") is not None else ([], {})
    opts = defaults | opts
    streams = _common.select_streams(store, opts.get("streams"))
    # A mapping names a rig's topics; a store need not record all of them (e.g. no cameras): entries
    # for streams it lacks are skipped and reported. A mapping that matches nothing is a wrong file.
    unused = {m.stream: m.topic for m in maps if m.stream not in store.streams}
    if maps and len(unused) == len(maps):
        raise ConfigError(f"{FORMAT} export: none of the mapping's streams {sorted(unused)} is in {store.path} "
                          f"(streams {sorted(store.streams)}); is it the mapping for this store?")
    mapped = {m.stream: m for m in maps if m.stream in streams}
    for name in streams:
        mapped.setdefault(name, _auto_map(store.streams[name]))
    for m in mapped.values():
        m.frame = m.frame or store.streams[m.stream].frame
    episodes = _common.select_episodes(store, opts.get("episodes"))
    storage = str(opts.get("storage", "mcap")).lower()
    plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise ConfigError(f"{FORMAT} export: storage={storage!r}; expected mcap or sqlite3")
    typestore = _typestore(opts.get("distro", "ROS2_JAZZY"))
    offset = float(opts.get("time_offset_s", 0.0))
    overwrite = _common.as_bool(opts.get("overwrite", False), "overwrite")
    messages = 0
    bags = []
    with _common.staged_output(out, overwrite, "folder of bags", store.path) as tmp:
        for e in progress_bar(episodes, desc="export rosbag", unit="ep", leave=False):
            bag = tmp / f"episode_{e:06d}"
            writer = Writer(bag, version=9, storage_plugin=plugins[storage])
            writer.open()
            try:
                custom = {"format": "robot_rl.rosbag_export", "version": 1, "source_store": str(store.path),
                          "source_episode": e, "episode": store.episode_meta(e), "index_stream": store.index_stream,
                          "time_offset_s": offset, "streams": {n: store.streams[n].to_dict() for n in streams},
                          "topics": [mapped[n].to_dict() for n in streams]}
                writer.set_custom_data(CUSTOM_KEY, _common.dumps(custom))
                conns = {n: writer.add_connection(mapped[n].topic, mapped[n].type, typestore=typestore)
                         for n in streams}
                for t, name, value in _merged_samples(store, e, streams):
                    msg = to_message(typestore.types, mapped[name], value, t + offset)
                    writer.write(conns[name], s_to_ns(t + offset), typestore.serialize_cdr(msg, mapped[name].type))
                    messages += 1
            finally:
                writer.close()
            bags.append(bag.name)
    return {"format": FORMAT, "out": str(out), "episodes": len(bags), "bags": bags, "messages": messages,
            "storage": storage, "resampled": False,
            "topics": {n: mapped[n].to_dict() for n in streams}, "unused_topics": unused}


def _merged_samples(store: EpisodeStore, episode: int, streams: list[str]) -> Iterator[tuple[float, str, Any]]:
    """All samples of an episode in time order, frames read in blocks (not the whole episode)."""
    import heapq

    def one(name: str):
        lo, hi = store.episode_rows(episode, name)
        times = np.asarray(store.times(name)[lo:hi], dtype=np.float64)
        block = 64 if store.streams[name].is_image else max(1, hi - lo)
        for s in range(0, hi - lo, block):
            values = store.values(name)[lo + s: min(hi, lo + s + block)]
            for k, v in enumerate(values):
                yield float(times[s + k]), name, v

    return heapq.merge(*(one(n) for n in streams), key=lambda item: item[0])


# -- import -------------------------------------------------------------------------------------
def find_bags(src: str | Path) -> list[Path]:
    src = Path(src)
    if not src.exists():
        raise StoreError(f"{src}: does not exist")
    if (src / "metadata.yaml").is_file():
        return [src]
    bags = sorted(p for p in src.iterdir() if (p / "metadata.yaml").is_file()) if src.is_dir() else []
    if not bags:
        raise StoreError(f"{src}: not a rosbag2 bag nor a folder of bags (no metadata.yaml found; "
                         f"a bare .mcap/.db3 file needs the folder `ros2 bag record` wrote)")
    return bags


def _custom_data(bag: Path) -> dict:
    try:
        info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    except (yaml.YAMLError, KeyError, TypeError) as e:
        raise StoreError(f"{bag / 'metadata.yaml'}: not a rosbag2 metadata file ({e!r})") from None
    raw = (info.get("custom_data") or {}).get(CUSTOM_KEY)
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise StoreError(f"{bag / 'metadata.yaml'}: custom_data.{CUSTOM_KEY} is not JSON: {raw[:80]!r}") from None


def _open_reader(bag: Path):
    from rosbags.rosbag2 import Reader

    try:
        reader = Reader(bag)
        reader.open()
    except Exception as e:  # rosbags raises its own error types for unreadable bags
        raise StoreError(f"{bag}: cannot read bag ({type(e).__name__}: {e})") from None
    return reader


def _stream_name(topic: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", topic.strip("/")) or "topic"
    return name if name[0].isalpha() else f"t_{name}"


def _auto_maps(reader) -> list[TopicMap]:
    return [TopicMap(topic=t, type=info.msgtype, stream=_stream_name(t)) for t, info in sorted(reader.topics.items())
            if info.msgtype in FIELDS]


def _first_samples(bags: list[Path], maps: list[TopicMap], typestore) -> dict[str, tuple]:
    """First sample, frame id and a rate estimate of every mapped topic (searching bag by bag)."""
    found: dict[str, tuple] = {}
    for bag in bags:
        reader = _open_reader(bag)
        try:
            todo = [m for m in maps if m.stream not in found and m.topic in reader.topics]
            for m in todo:
                conns = [c for c in reader.connections if c.topic == m.topic]
                value = frame = None
                log_times = []
                for conn, t_ns, raw in reader.messages(connections=conns):
                    if value is None:
                        where = f"{bag} {m.topic} message 0 (log time {t_ns} ns)"
                        value, _, frame = from_message(m, decode_cdr(typestore, raw, conn.msgtype, where), t_ns,
                                                       where)
                    log_times.append(t_ns)
                    if len(log_times) >= RATE_PROBE:
                        break
                if value is not None:
                    # nominal rate: median spacing of the first messages (robust to gaps and drops)
                    dt = np.median(np.diff(log_times)) * 1e-9 if len(log_times) > 1 else 0.0
                    found[m.stream] = (value, frame, round(1.0 / dt, 2) if dt > 0 else 1.0)
        finally:
            reader.close()
        if len(found) == len(maps):
            break
    return found


def _specs(maps, custom, first, opts) -> list[StreamSpec]:
    originals = custom.get("streams") or {}
    specs = []
    for m in maps:
        value, frame, rate = first[m.stream]
        original = originals.get(m.stream)
        if original:
            specs.append(_common.spec_from_array(m.stream, original["dtype"], tuple(original["shape"]),
                                                 original["rate_hz"], original))
            continue
        fields = {"units": m.units, "frame": m.frame or frame}
        interp = m.interp or ("slerp" if m.field == "orientation" else None)
        specs.append(_common.spec_from_array(m.stream, value.dtype, value.shape, m.rate_hz or rate,
                                             image_codec=opts.get("image_codec", "auto"), interp=interp, **fields))
    return specs


def import_store(src: str | Path, out_store_path: str | Path, **options: Any) -> EpisodeStore:
    """Import a bag, or a folder of bags, into a new store (see the module docstring)."""
    opts = _common.check_options(FORMAT, "import", options, IMPORT_OPTIONS)
    bags = find_bags(src)
    custom = _custom_data(bags[0])
    if opts.get("topics") is not None:
        maps, defaults = load_mapping(opts["topics"])
        opts = defaults | opts
    elif custom.get("topics"):
        maps = [TopicMap.from_dict(d, f"{bags[0]} custom_data") for d in custom["topics"]]
    else:
        reader = _open_reader(bags[0])
        try:
            maps = _auto_maps(reader)
        finally:
            reader.close()
        if not maps:
            raise StoreError(f"{bags[0]}: no topic of a supported type ({sorted(FIELDS)}); pass topics=<mapping>")
    split = str(opts.get("episode_split", "bag"))
    if split not in ("bag", "gap"):
        raise ConfigError(f"{FORMAT} import: episode_split={split!r}; expected bag or gap")
    gap = float(opts.get("split_gap_s", 1.0))
    missing = str(opts.get("missing", "error"))
    if missing not in ("error", "skip"):
        raise ConfigError(f"{FORMAT} import: missing={missing!r}; expected error or skip")
    offset = float(opts.get("time_offset_s", custom.get("time_offset_s", 0.0)))
    typestore = _typestore(opts.get("distro", "ROS2_JAZZY"))

    first = _first_samples(bags, maps, typestore)
    absent = [m.topic for m in maps if m.stream not in first]
    if absent and missing == "error":
        raise StoreError(f"{src}: mapped topic(s) {absent} have no messages in any bag; fix the mapping or "
                         f"pass missing=skip")
    maps = [m for m in maps if m.stream in first]
    if not maps:
        raise StoreError(f"{src}: none of the mapped topics has messages")
    specs = _specs(maps, custom, first, opts)
    names = [m.stream for m in maps]
    index_stream = opts.get("index_stream") or custom.get("index_stream")
    index_stream = index_stream if index_stream in names else ("action" if "action" in names else names[0])
    if opts.get("index_stream") and opts["index_stream"] not in names:
        raise ConfigError(f"index_stream={opts['index_stream']!r} is not a mapped stream {names}")
    append = _common.as_bool(opts.get("append", False), "append")
    with _common.importing(out_store_path, specs, index_stream, append, int(opts.get("jpeg_quality", 90))) as store, \
            EpisodeWriter(store, block_on_full=True) as writer:
        for bag in progress_bar(bags, desc="import rosbag", unit="ep", leave=False):
            _import_bag(bag, writer, store, maps, typestore, offset, split, gap, missing, opts)
    return store


def _import_bag(bag, writer, store, maps, typestore, offset, split, gap, missing, opts) -> None:
    custom = _custom_data(bag)
    reader = _open_reader(bag)
    try:
        absent = [m.topic for m in maps if m.topic not in reader.topics]
        if absent and missing == "error":
            raise StoreError(f"{bag}: mapped topic(s) {absent} are not in this bag (topics: {sorted(reader.topics)}); "
                             f"pass missing=skip to import it without them")
        by_topic = {m.topic: m for m in maps if m.topic in reader.topics}
        conns = [c for c in reader.connections if c.topic in by_topic]
        base_meta = custom.get("episode") or {"source": opts.get("source", "imported"), "task": opts.get("task", "")}
        state = _Episode(writer, store, base_meta, bag)
        index = dict.fromkeys(by_topic, 0)
        for conn, t_ns, raw in reader.messages(connections=conns):
            m = by_topic[conn.topic]
            where = f"{bag} {m.topic} message {index[m.topic]} (log time {t_ns} ns)"
            index[m.topic] += 1
            value, t, _ = from_message(m, decode_cdr(typestore, raw, conn.msgtype, where), t_ns, where)
            t -= offset
            if split == "gap" and m.stream == store.index_stream and state.last_index is not None \
                    and t - state.last_index > gap:
                state.commit()
            state.append(m.stream, value, t, where)
        state.commit()
    finally:
        reader.close()


class _Episode:
    """The episode being imported from a bag: begins lazily, skips (and counts) unorderable stamps."""

    def __init__(self, writer, store: EpisodeStore, meta: dict, bag: Path) -> None:
        self.writer, self.store, self.meta, self.bag = writer, store, meta, bag
        self.part = 0
        self._reset()

    def _reset(self) -> None:
        self.last: dict[str, float] = {}
        self.skipped: dict[str, int] = {}
        self.last_index: float | None = None
        self.open = False

    def append(self, stream: str, value: np.ndarray, t: float, where: str) -> None:
        spec = self.store.streams[stream]
        if value.shape != spec.shape:
            raise StoreError(f"{where}: sample shape {value.shape} differs from the stream's {spec.shape} "
                             f"(set by the first message)")
        if not self.open:
            meta = EpisodeMeta.from_dict({k: v for k, v in self.meta.items() if k not in ("source_episode",)})
            meta.extra["imported_from"] = {"format": FORMAT, "bag": str(self.bag), "part": self.part}
            if not meta.start_time:  # a bag not written by us: its first stamp (each part of a split bag its own)
                meta.start_time = _common.start_time_from(t)
            self.writer.begin_episode(meta)
            self.open = True
        if stream in self.last and t <= self.last[stream]:
            self.skipped[stream] = self.skipped.get(stream, 0) + 1
            return
        self.writer.append(stream, value.astype(spec.dtype, copy=False), t)
        self.last[stream] = t
        if stream == self.store.index_stream:
            self.last_index = t

    def commit(self) -> None:
        if not self.open:
            return
        updates = {}
        if self.skipped:
            updates["import_skipped"] = dict(self.skipped)
            updates["notes"] = (self.meta.get("notes", "") + f" [import skipped out-of-order/repeated stamps: "
                                f"{self.skipped}]").strip()
        self.writer.commit(success=self.meta.get("success"), **updates)
        self.part += 1
        self._reset()
