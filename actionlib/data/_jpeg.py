"""Region decoding of JPEG frames with libjpeg-turbo: only the box a clip transform keeps.

A training clip keeps one multi-scale crop (about half the frame on average) of every frame, so
decoding whole frames wastes about half of the decoding time, the largest cost of loading a
clip. libjpeg-turbo decodes a box directly: ``jpeg_crop_scanline`` limits the columns (to whole
iMCUs, i.e. 8 or 16 pixels), ``jpeg_skip_scanlines`` skips the rows above the box, and
decompression stops after its last row.

The pixels are those of a full decode (accurate integer DCT and fancy upsampling, the libjpeg
defaults, as ``torchvision.io.decode_jpeg`` uses them): libjpeg's fancy upsampling replicates the
edge chroma sample in the first and last column of a cropped decode, so the columns are widened
by one chroma sample (``max_h_samp_factor`` pixels) on each side inside the image, and the
extra columns are dropped; rows need no margin (the library keeps the context rows itself). The
tests check bit-exactness against a full decode for 4:2:0, 4:2:2, 4:4:4, grayscale and
progressive files.

A file truncated *below* the box decodes without error here (the missing rows are never read),
while a full decode rejects it; every other corrupt file raises as in a full decode.

The same extension converts decoded (channels-last) uint8 frames to the plain ``(N, 3, H, W)``
layout (:func:`planar_frames`): the copy torch makes for ``.contiguous()`` costs 0.3 ms per
8-frame 224 x 224 clip here, this loop (vectorised by the compiler) 0.02 ms.

Compiled on first use by :mod:`actionlib._cpp` (needs a C++ compiler and the libjpeg(-turbo)
headers and library); :func:`kernels` returns ``None`` where that is impossible or
``ACTIONLIB_NO_CPP=1``, and the callers then decode whole frames with torchvision.
"""

from __future__ import annotations

from types import ModuleType

import torch

from .. import _cpp

_SOURCE = r"""
#include <torch/extension.h>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <vector>
#include <jpeglib.h>

namespace {

// libjpeg reports fatal errors through error_exit, which must not return: jump back to the
// decoding function (plain C data only between setjmp and longjmp), which throws from there.
struct ErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void on_error(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void on_message(j_common_ptr) {}  // warnings (e.g. extraneous bytes) are not printed

// jpeg_mem_src inserts a fake end-of-image at the end of the data; reject the file instead,
// as torchvision's decoder does.
boolean on_end_of_data(j_decompress_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  std::snprintf(err->message, JMSG_LENGTH_MAX, "image is incomplete or truncated");
  std::longjmp(err->jump, 1);
}

bool converts_to_rgb(J_COLOR_SPACE cs) {
  return cs == JCS_GRAYSCALE || cs == JCS_YCbCr || cs == JCS_RGB;
}

// Reads the header of the JPEG in data (size bytes) and, unless out is null, decodes rows
// [top, top + height) x columns [left, left + width) to out (height x width x 3 RGB, row-major).
// info <- {image height, image width, 1 if decoded (or decodable, header only) else 0}; 0 when
// the colour space does not convert to RGB (CMYK, YCCK) or the box does not fit in the image.
// Returns false on a libjpeg error, with the message in err->message.
bool decode(const unsigned char* data, size_t size, unsigned char* out, long top, long left,
            long height, long width, long info[3], ErrorManager* err) {
  jpeg_decompress_struct cinfo;
  cinfo.err = jpeg_std_error(&err->pub);
  err->pub.error_exit = on_error;
  err->pub.output_message = on_message;
  if (setjmp(err->jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, size);
  cinfo.src->fill_input_buffer = on_end_of_data;
  jpeg_read_header(&cinfo, TRUE);
  const long H = cinfo.image_height, W = cinfo.image_width;
  info[0] = H;
  info[1] = W;
  info[2] = converts_to_rgb(cinfo.jpeg_color_space) && top >= 0 && left >= 0 && height >= 1 &&
            width >= 1 && top + height <= H && left + width <= W;
  if (out == nullptr || !info[2]) {
    jpeg_destroy_decompress(&cinfo);
    return true;
  }
  cinfo.out_color_space = JCS_RGB;  // accurate DCT and fancy upsampling: the defaults
  jpeg_start_decompress(&cinfo);
  // fancy upsampling replicates the edge chroma sample in the first and last column of a cropped
  // decode: widen by one chroma sample on each side (inside the image) and drop those columns
  const long margin = cinfo.max_h_samp_factor;
  const long x0 = left > margin ? left - margin : 0;
  const long x1 = left + width + margin < W ? left + width + margin : W;
  JDIMENSION xoffset = x0, xwidth = x1 - x0;  // aligned down to an iMCU by libjpeg
  if (x0 > 0 || x1 < W) jpeg_crop_scanline(&cinfo, &xoffset, &xwidth);
  if (top > 0) jpeg_skip_scanlines(&cinfo, top);
  // a few rows per call (libjpeg returns at most one row group, max_v_samp_factor rows)
  const long batch = 4;
  JSAMPARRAY rows = (*cinfo.mem->alloc_sarray)(
      reinterpret_cast<j_common_ptr>(&cinfo), JPOOL_IMAGE, cinfo.output_width * 3, batch);
  const long skip = (left - static_cast<long>(xoffset)) * 3;
  for (long y = 0; y < height;) {
    const long n = jpeg_read_scanlines(&cinfo, rows, height - y < batch ? height - y : batch);
    if (n == 0) {  // cannot happen with an in-memory source; never loop forever
      std::snprintf(err->message, JMSG_LENGTH_MAX, "the decoder returned no rows");
      jpeg_destroy_decompress(&cinfo);
      return false;
    }
    for (long r = 0; r < n; ++r, ++y) std::memcpy(out + y * width * 3, rows[r] + skip, width * 3);
  }
  jpeg_destroy_decompress(&cinfo);  // the rows below the box are never read
  return true;
}

std::vector<int64_t> run(const torch::Tensor& data, unsigned char* out, int64_t top, int64_t left,
                         int64_t height, int64_t width) {
  TORCH_CHECK(data.dtype() == torch::kUInt8 && data.dim() == 1 && data.is_contiguous() &&
                  data.device().is_cpu(), "data must be a contiguous 1-D uint8 CPU tensor");
  long info[3] = {0, 0, 0};
  ErrorManager err;
  bool ok;
  {
    pybind11::gil_scoped_release no_gil;
    ok = decode(data.data_ptr<unsigned char>(), data.numel(), out, top, left, height, width, info,
                &err);
  }
  if (!ok) throw std::runtime_error(err.message);
  return {info[0], info[1], info[2]};
}

}  // namespace

// {height, width, 1 if the colour space converts to RGB else 0}
std::vector<int64_t> jpeg_header(const torch::Tensor& data) {
  return run(data, nullptr, 0, 0, 1, 1);
}

// decodes the box of out's size at (top, left) into out, uint8 (height, width, 3) contiguous;
// returns {image height, image width, 1 if decoded else 0 (see decode)}
std::vector<int64_t> decode_jpeg_region_into(const torch::Tensor& data, torch::Tensor out,
                                             int64_t top, int64_t left) {
  TORCH_CHECK(out.dtype() == torch::kUInt8 && out.dim() == 3 && out.size(2) == 3 &&
                  out.is_contiguous() && out.device().is_cpu(),
              "out must be a contiguous uint8 (height, width, 3) CPU tensor");
  return run(data, out.data_ptr<unsigned char>(), top, left, out.size(0), out.size(1));
}

// src uint8 (N, H, W, 3) contiguous -> dst uint8 (N, 3, H, W) contiguous
void planar_into(const torch::Tensor& src, torch::Tensor dst) {
  TORCH_CHECK(src.dtype() == torch::kUInt8 && src.dim() == 4 && src.size(3) == 3 && src.is_contiguous() &&
                  src.device().is_cpu(), "src must be a contiguous uint8 (N, H, W, 3) CPU tensor");
  TORCH_CHECK(dst.dtype() == torch::kUInt8 && dst.dim() == 4 && dst.is_contiguous() && dst.device().is_cpu() &&
                  dst.size(0) == src.size(0) && dst.size(1) == 3 && dst.size(2) == src.size(1) &&
                  dst.size(3) == src.size(2), "dst must be a contiguous uint8 (N, 3, H, W) CPU tensor");
  const int64_t n = src.size(0), hw = src.size(1) * src.size(2);
  const unsigned char* s = src.data_ptr<unsigned char>();
  unsigned char* d = dst.data_ptr<unsigned char>();
  pybind11::gil_scoped_release no_gil;
  for (int64_t k = 0; k < n; ++k) {
    const unsigned char* __restrict in = s + k * hw * 3;
    unsigned char* __restrict r = d + k * hw * 3;
    unsigned char* __restrict g = r + hw;
    unsigned char* __restrict b = g + hw;
    for (int64_t i = 0; i < hw; ++i) {
      r[i] = in[3 * i];
      g[i] = in[3 * i + 1];
      b[i] = in[3 * i + 2];
    }
  }
}
"""

_FUNCTIONS = ("jpeg_header", "decode_jpeg_region_into", "planar_into")


def kernels() -> ModuleType | None:
    """The compiled decoder, or ``None`` (cannot be built here, or ``ACTIONLIB_NO_CPP=1``);
    built or loaded from the cache on the first call of a process."""
    return _cpp.load_extension("jpeg_region", _SOURCE, _FUNCTIONS, extra_ldflags=["-ljpeg"])


def available() -> bool:
    """True when region decoding can be used (the extension builds and is not disabled)."""
    return kernels() is not None


def _require() -> ModuleType:
    mod = kernels()
    if mod is None:
        raise RuntimeError("JPEG region decoding is unavailable (see the log, or ACTIONLIB_NO_CPP)")
    return mod


def jpeg_header(data: torch.Tensor) -> tuple[int, int, bool]:
    """``(height, width, decodable)`` from the header of the JPEG bytes ``data`` (uint8 1-D);
    ``decodable`` is False for colour spaces this decoder does not convert to RGB (CMYK, YCCK).
    Raises ``RuntimeError`` with libjpeg's message for a corrupt header."""
    h, w, ok = _require().jpeg_header(data)
    return h, w, bool(ok)


def decode_region_into(data: torch.Tensor, out: torch.Tensor, top: int, left: int) -> tuple[int, int, bool]:
    """Decode the box of ``out``'s size at ``(top, left)`` of the JPEG ``data`` into ``out``
    (uint8 ``(height, width, 3)`` RGB, contiguous). Returns ``(image height, image width,
    decoded)``; ``decoded`` is False (``out`` untouched) when the box does not fit in the image
    or the colour space is not supported. Raises ``RuntimeError`` for a corrupt file."""
    h, w, ok = _require().decode_jpeg_region_into(data, out, int(top), int(left))
    return h, w, bool(ok)


def decode_jpeg_region(data: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """Rows ``[top, top + height)`` x columns ``[left, left + width)`` of the JPEG ``data``
    -> uint8 ``(height, width, 3)`` RGB, equal to the same box of a full decode."""
    out = torch.empty((height, width, 3), dtype=torch.uint8)
    h, w, ok = decode_region_into(data, out, top, left)
    if not ok:
        raise ValueError(f"cannot decode box (top={top}, left={left}, height={height}, width={width}) of a "
                         f"{h}x{w} JPEG (box outside the image, or CMYK/YCCK colour space)")  # fmt: skip
    return out


def planar_frames(frames: torch.Tensor) -> torch.Tensor:
    """``frames.contiguous()`` for uint8 ``(N, 3, H, W)`` frames: channels-last ones (the layout
    of decoded and resized frames) are converted by the extension where it is available."""
    mod = kernels()
    if (mod is None or frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[1] != 3
            or frames.device.type != "cpu" or not frames.permute(0, 2, 3, 1).is_contiguous()):  # fmt: skip
        return frames.contiguous()
    out = torch.empty(frames.shape, dtype=torch.uint8)
    mod.planar_into(frames.permute(0, 2, 3, 1), out)
    return out
