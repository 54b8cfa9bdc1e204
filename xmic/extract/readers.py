"""Decode the frames of one segment: JPEG folders and tars of JPEGs through Pillow, videos
through PyAV (FFmpeg).

Input: a ``FrameSource`` and annotation frame numbers. Output: one RGB ``PIL.Image`` per frame,
in order (``read_frames``), or, for the GPU decoder, each JPEG's bytes and header size
(``read_jpeg_bytes``). A video is seeked once to the keyframe before the first wanted frame and decoded
forward; frame positions come from timestamps. Errors (``ReadError``) name the file and the
frame: a missing or empty JPEG (or archive member), one that is not a regular file (a FIFO would
block the worker) or larger than a frame can be, a corrupt or truncated video, frames past the
video's end.
"""
from __future__ import annotations

import io
import os
import stat

from PIL import Image, UnidentifiedImageError

from xmic.config import XmicError
from xmic.extract.frame_archive import MAX_FRAME_BYTES, MEMBER_NAME, read_member
from xmic.extract.media import FrameSource


class ReadError(XmicError):
    pass


MAX_FRAME_PIXELS = 8192 * 8192  # a video frame is at most 8K; a larger header is a bomb or garbage


def _check_size(im: Image.Image, where: str, frame: int) -> None:
    """Refuse a header that declares more pixels than any video frame, before decoding."""
    if im.width * im.height > MAX_FRAME_PIXELS:
        raise ReadError(f"{where}: frame {frame} declares {im.width}x{im.height} pixels, more "
                        "than any video frame (8192x8192); not decoded (a decompression bomb "
                        "or a damaged header)")


def _frame_path(src: FrameSource, frame: int):
    return src.path / src.pattern.format(frame - src.first_frame + 1)


def open_frame(path, frame: int):
    """A JPEG frame file opened for reading, refused unless it is a regular file of at most
    ``MAX_FRAME_BYTES`` (a FIFO would block the worker forever)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ReadError(f"{path}: frame {frame} is missing") from None
    except OSError as e:
        raise ReadError(f"{path}: frame {frame} cannot be opened ({e.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FRAME_BYTES:
        os.close(fd)
        why = ("is not a regular file (a FIFO, a device or a folder)" if not stat.S_ISREG(st.st_mode)
               else f"holds {st.st_size} bytes, more than a frame can ({MAX_FRAME_BYTES >> 20} MiB)")
        raise ReadError(f"{path}: frame {frame} {why}; not read")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _decode(opened, where: str, frame: int) -> Image.Image:
    """One RGB image from an opened JPEG (a path or the bytes of an archive member)."""
    try:
        with Image.open(opened) as im:  # reads the header only
            _check_size(im, where, frame)
            return im.convert("RGB")
    except FileNotFoundError:
        raise ReadError(f"{where}: frame {frame} is missing") from None
    except Image.DecompressionBombError as e:
        raise ReadError(f"{where}: frame {frame} is not decoded: {e}") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ReadError(f"{where}: frame {frame} is not a readable image ({e})") from None


def read_jpegs(src: FrameSource, frames: list[int]) -> list[Image.Image]:
    out = []
    for f in frames:
        p = _frame_path(src, f)
        with open_frame(p, f) as fh:
            out.append(_decode(fh, str(p), f))
    return out


def read_archive(src: FrameSource, frames: list[int]) -> list[Image.Image]:
    """Frames of a tar of JPEGs (``xmic.extract.frame_archive``), decoded exactly as files."""
    out = []
    for f in frames:
        n = f - src.first_frame + 1
        where = f"{src.path}: member {MEMBER_NAME.format(n)}"
        out.append(_decode(io.BytesIO(read_member(src.path, n)), where, f))
    return out


def read_video(src: FrameSource, frames: list[int]) -> list[Image.Image]:
    import av
    want = sorted({f - src.first_frame for f in frames})
    if want and want[0] < 0:
        raise ReadError(f"{src.path}: frame {want[0] + src.first_frame} precedes the video")
    got: dict[int, Image.Image] = {}
    seen = -1
    try:
        with av.open(str(src.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = float(stream.average_rate or stream.guessed_rate)
            tb = float(stream.time_base)
            start = (stream.start_time or 0) * tb
            if want and want[0] > 0:
                container.seek(int((start + want[0] / fps) / tb), stream=stream, backward=True)
            wanted = set(want)
            for frame in container.decode(stream):
                idx = int(round((frame.pts * tb - start) * fps)) if frame.pts is not None else seen + 1
                seen = max(seen, idx)
                if idx in wanted:
                    got[idx] = frame.to_image()
                if idx >= want[-1]:
                    break
    except (av.FFmpegError, IndexError, ValueError) as e:
        raise ReadError(f"{src.path}: cannot decode video ({type(e).__name__}: {e}); the file is "
                        "corrupt, truncated or not a video") from None
    except FileNotFoundError:
        raise ReadError(f"{src.path}: video not found") from None
    missing = [i for i in want if i not in got]
    if missing:
        raise ReadError(f"{src.path}: frame(s) {[m + src.first_frame for m in missing[:5]]} lie past "
                        f"the end of the video (last decoded frame {seen + src.first_frame}); the "
                        "segment's stop is beyond the video")
    return [got[f - src.first_frame] for f in frames]


READERS = {"jpeg": read_jpegs, "tar": read_archive, "video": read_video}


def jpeg_header(data: bytes, where: str, frame: int) -> tuple[int, int]:
    """(width, height) of a JPEG from its header, nothing decoded; the same refusals as
    ``_decode`` (missing, not an image, a bomb), and a frame that is not a JPEG."""
    if not data:
        raise ReadError(f"{where}: frame {frame} is empty")
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "JPEG":
                raise ReadError(f"{where}: frame {frame} is a {im.format} image, not a JPEG; "
                                "--decode gpu decodes JPEGs only: use --decode cpu")
            _check_size(im, where, frame)
            return im.width, im.height
    except (UnidentifiedImageError, OSError) as e:
        raise ReadError(f"{where}: frame {frame} is not a readable image ({e})") from None


def _jpeg_file(src: FrameSource, f: int) -> tuple[bytes, str]:
    p = _frame_path(src, f)
    with open_frame(p, f) as fh:
        return fh.read(), str(p)


def _jpeg_member(src: FrameSource, f: int) -> tuple[bytes, str]:
    n = f - src.first_frame + 1
    return read_member(src.path, n), f"{src.path}: member {MEMBER_NAME.format(n)}"


BYTE_READERS = {"jpeg": _jpeg_file, "tar": _jpeg_member}  # sources whose frames are JPEG files


def read_jpeg_bytes(src: FrameSource, frames: list[int]) -> list[tuple[bytes, tuple[int, int], str]]:
    """Each frame's JPEG bytes, its (width, height) and where it lies, nothing decoded (the
    GPU decodes them); a video file is refused: its frames are not JPEGs."""
    if src.kind not in BYTE_READERS:
        raise ReadError(f"{src.path}: the frames are a video file, and --decode gpu decodes "
                        "JPEG frames (folders and tars) only; extract this split with --decode cpu")
    out = []
    for f in frames:
        data, where = BYTE_READERS[src.kind](src, f)
        out.append((data, jpeg_header(data, where, f), where))
    return out


def read_frames(src: FrameSource, frames: list[int]) -> list[Image.Image]:
    return READERS[src.kind](src, frames)
