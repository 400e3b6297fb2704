"""The scene engine: a scene file + trajectory stores -> frames (numpy only; never imports torch).

Public API (used by ``render/``):

    load_scene(path, named_stores=None) -> Scene  validate a TOML scene (docs/scene-format.md)
    resolve_store(value, base_dir=".") -> Path    what a scene's ``store = ...`` path points at
    read_generate(text, path, ...) -> GenerateSpec | None   the [generate] table (render.endless)
    with_canvas(scene, width=None, height=None, fps=None) -> Scene
    frame(scene, t) -> uint8 [height, width]      pure function of (scene, stores, t seconds)
    frame_at_index(scene, i) -> uint8 frame at t = i / fps
    iter_frames(scene, start=0, stop=None, threads=1) -> Iterator[uint8 frames]
    visible_samples(scene, i) -> [(store path, sample index)]  what frame i is made of

Scene attributes: width, height, fps, duration, loop, frame_count, source_path, stores.
"""

from scenes.frames import frame, frame_at_index, iter_frames, visible_samples
from scenes.loading import check_stores, load_scene, read_generate, read_scene_text, resolve_store, scene_from_dict, scene_from_text, with_canvas
from scenes.spec import DEFAULT_MODEL, FORMAT_VERSION, GENERATED_STORE, GenerateSpec, Scene

__all__ = [
    "DEFAULT_MODEL",
    "FORMAT_VERSION",
    "GENERATED_STORE",
    "GenerateSpec",
    "Scene",
    "check_stores",
    "frame",
    "frame_at_index",
    "iter_frames",
    "load_scene",
    "read_generate",
    "read_scene_text",
    "resolve_store",
    "scene_from_dict",
    "scene_from_text",
    "visible_samples",
    "with_canvas",
]
