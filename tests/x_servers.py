"""Real X servers for the window tests: Xvfb, and Xephyr on it for several screens.

Xvfb with ``+xinerama`` stacks every screen at (0, 0), so a display whose screens sit side by
side is made with Xephyr (a nested X server, software GL through Mesa) running on a private
Xvfb: ``-screen 640x360+0+0 -screen 640x360+640+0 +xinerama``. :func:`grab` reads the root
window's pixels back with XGetImage: what the screens actually show, all windows together.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import shutil
import subprocess
import time
from typing import Iterator

import numpy as np
import pytest

SKIP_XVFB = "Xvfb is not installed (apt-get install xvfb libgl1-mesa-dri libglx-mesa0 libgl1; .ci/run does it)"
SKIP_XEPHYR = "Xephyr is not installed (apt-get install xserver-xephyr; .ci/run does it)"


def _start(argv: list[str], env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """Start an X server that reports its display number on a pipe (-displayfd)."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen([*argv, "-displayfd", str(write_fd), "-nolisten", "tcp"], pass_fds=(write_fd,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    os.close(write_fd)
    number = b""
    deadline = time.time() + 20
    while not number.endswith(b"\n") and time.time() < deadline:
        if not select.select([read_fd], [], [], max(0.0, deadline - time.time()))[0]:
            break
        chunk = os.read(read_fd, 16)
        if not chunk:
            break
        number += chunk
    os.close(read_fd)
    if not number.strip():
        proc.kill()
        pytest.fail(f"{argv[0]} did not start")
    return proc, f":{int(number)}"


@contextlib.contextmanager
def xvfb(width: int = 1280, height: int = 1024) -> Iterator[str]:
    """A private Xvfb with one screen; yields its DISPLAY."""
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip(SKIP_XVFB)
    proc, display = _start([exe, "-screen", "0", f"{width}x{height}x24"])
    try:
        yield display
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def side_by_side(count: int, width: int, height: int) -> Iterator[str]:
    """``count`` screens of ``width`` x ``height`` in a row (Xephyr with Xinerama on a private Xvfb); yields DISPLAY."""
    exe = shutil.which("Xephyr")
    if exe is None:
        pytest.skip(SKIP_XEPHYR)
    with xvfb(width * count, height) as host:
        screens = [arg for k in range(count) for arg in ("-screen", f"{width}x{height}+{k * width}+0")]
        proc, display = _start([exe, "-br", "+xinerama", *screens], env=dict(os.environ, DISPLAY=host))
        try:
            yield display
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def grab(display: str, width: int, height: int) -> np.ndarray:
    """The root window's top-left ``width`` x ``height`` as uint8 [h, w] (the red channel: the pieces are grey)."""
    x11 = ctypes.CDLL("libX11.so.6")
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XDefaultRootWindow.restype = ctypes.c_ulong
    x11.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    x11.XGetImage.restype = ctypes.c_void_p
    x11.XGetImage.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_int, ctypes.c_uint,
                              ctypes.c_uint, ctypes.c_ulong, ctypes.c_int]

    class XImage(ctypes.Structure):  # the leading fields of Xlib's XImage
        _fields_ = [("width", ctypes.c_int), ("height", ctypes.c_int), ("xoffset", ctypes.c_int),
                    ("format", ctypes.c_int), ("data", ctypes.c_void_p), ("byte_order", ctypes.c_int),
                    ("bitmap_unit", ctypes.c_int), ("bitmap_bit_order", ctypes.c_int), ("bitmap_pad", ctypes.c_int),
                    ("depth", ctypes.c_int), ("bytes_per_line", ctypes.c_int), ("bits_per_pixel", ctypes.c_int)]

    handle = x11.XOpenDisplay(display.encode())
    if not handle:
        raise RuntimeError(f"cannot open display {display}")
    try:
        image_ptr = x11.XGetImage(handle, x11.XDefaultRootWindow(handle), 0, 0, width, height, 0xFFFFFFFF, 2)
        image = XImage.from_address(image_ptr)
        if image.bits_per_pixel != 32:
            raise RuntimeError(f"expected a 32-bit visual, got {image.bits_per_pixel} bits per pixel")
        raw = ctypes.string_at(image.data, image.bytes_per_line * height)
        pixels = np.frombuffer(raw, np.uint8).reshape(height, image.bytes_per_line // 4, 4)[:, :width]
        red = 2 if image.byte_order == 0 else 1  # LSBFirst: B, G, R, X in memory
        out = pixels[:, :, red].copy()
        ctypes.CDLL("libc.so.6").free(ctypes.c_void_p(image.data))  # XDestroyImage: the data, then the struct
        ctypes.CDLL("libc.so.6").free(ctypes.c_void_p(image_ptr))
        return out
    finally:
        x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
        x11.XCloseDisplay(handle)


def press(display: str, keysyms: list[str], at: tuple[int, int] = (10, 10)) -> None:
    """Press ``keysyms`` together (a chord: all down, then all up) through XTEST, the pointer at ``at``.

    The events are real X input: they reach whichever window has the focus (with no window
    manager, the one under the pointer).
    """
    x11 = ctypes.CDLL("libX11.so.6")
    xtst = ctypes.CDLL("libXtst.so.6")
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XStringToKeysym.restype = ctypes.c_ulong
    x11.XStringToKeysym.argtypes = [ctypes.c_char_p]
    x11.XKeysymToKeycode.restype = ctypes.c_ubyte
    x11.XKeysymToKeycode.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
    x11.XFlush.argtypes = [ctypes.c_void_p]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    xtst.XTestFakeKeyEvent.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_ulong]
    xtst.XTestFakeMotionEvent.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_ulong]
    handle = x11.XOpenDisplay(display.encode())
    if not handle:
        raise RuntimeError(f"cannot open display {display}")
    try:
        xtst.XTestFakeMotionEvent(handle, -1, at[0], at[1], 0)
        codes = [x11.XKeysymToKeycode(handle, x11.XStringToKeysym(k.encode())) for k in keysyms]
        for code in codes:
            xtst.XTestFakeKeyEvent(handle, code, 1, 0)
        for code in reversed(codes):
            xtst.XTestFakeKeyEvent(handle, code, 0, 0)
        x11.XFlush(handle)
    finally:
        x11.XCloseDisplay(handle)
