"""H.264 levels and targets: the level chosen from the size, and a stream that stays inside it."""

from __future__ import annotations

import numpy as np
import pytest

from diffusion.common.errors import EntropicError
from render.ffmpeg import packet_timeline, probe_video
from render.h264_levels import LEVELS, minimum_level, x264_target
from render.export import write_video
from render.video_sink import VideoSettings


@pytest.mark.parametrize(
    "width,height,fps,level",
    [(640, 360, 30, "3"), (1280, 720, 30, "3.1"), (1920, 1080, 30, "4"), (1920, 1080, 60, "4.2"),
     (3840, 2160, 30, "5.1"), (3840, 2160, 60, "5.2"), (8192, 4320, 120, "6.2"), (176, 144, 15, "1"), (176, 144, 30, "1.1")],
)
def test_minimum_level_is_the_lowest_that_fits_table_a1(width, height, fps, level):
    assert minimum_level(width, height, fps).name == level


def test_levels_rise_and_a_side_beyond_the_square_limit_needs_a_higher_level():
    assert [lv.idc for lv in LEVELS] == sorted(lv.idc for lv in LEVELS)
    # 4096x32 is only 512 macroblocks (level 1.3's MaxFS is 396, 2.1's 792), but A.3.1 bounds each
    # side by sqrt(8 MaxFS) macroblocks: 256 across needs MaxFS >= 8192, level 4.
    assert minimum_level(4096, 32, 30).name == "4"


def test_beyond_every_level_is_one_clear_error():
    with pytest.raises(EntropicError, match=r"16384x16384 at 30 fps is beyond every H.264 level"):
        minimum_level(16384, 16384, 30)
    with pytest.raises(EntropicError, match="unknown --target 'tv'"):
        x264_target("tv", 1920, 1080, 30)


def test_targets():
    player = x264_target("player", 1920, 1080, 30)
    assert (player.level.name, player.max_rate, player.buffer) == ("4.1", 40000, 30000)
    assert x264_target("player", 640, 360, 30).level.name == "4.1"  # players are 1080p players
    assert x264_target("player", 3840, 2160, 30).max_rate == 100000
    assert "intra-refresh=1" in player.x264_args()  # no keyframe ticks for players
    archive = x264_target("archive", 1920, 1080, 30)
    assert (archive.level.name, archive.max_rate, archive.buffer) == ("5.1", 300000, 300000)
    assert "intra-refresh=1" not in archive.x264_args()  # keyframes for seeking and editing
    for target in ("player", "archive"):  # never more than the declared level allows
        for size in ((640, 360, 30), (1920, 1080, 60), (3840, 2160, 60), (7680, 4320, 30)):
            rc = x264_target(target, *size)
            assert rc.max_rate <= rc.level.high_max_br and rc.buffer <= rc.level.high_max_cpb


def test_a_stream_of_pure_noise_stays_inside_its_declared_level(tmp_path):
    """1080p noise is the worst case: uncapped it would take ~400 Mbit/s. Read back from the file:
    the declared level, the peak over one-second windows and the decoder buffer's model."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (1080, 1920), dtype=np.uint8) for _ in range(45)]
    out = tmp_path / "noise.mp4"
    write_video(iter(frames), out, 1920, 1080, 30, VideoSettings(crf=10))
    facts = probe_video(out)
    assert (facts.profile, facts.level) == ("High", 41)
    packets = packet_timeline(out)
    rc = x264_target("player", 1920, 1080, 30)
    assert packets.buffer_underflows(rc.max_rate * 1000, rc.buffer * 1000, 30) == 0
    assert packets.peak_bitrate(1.0) <= (rc.max_rate + rc.buffer) * 1000
    assert packets.peak_bitrate(1.0) > 20e6  # it did have to be capped
    # The same buffer check catches a stream that breaks it: a 4 Mbit/s player would stall.
    assert packets.buffer_underflows(4e6, 3e6, 30) > 0
