"""Image folders (modes, EXIF, GIF, crop, captions, bad files) and the PSNR / SSIM metrics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from flowtok.data.imagefolder import load_folder, load_image, scan_folder
from flowtok.errors import DataError
from flowtok.eval.recon import mean_psnr, psnr, ssim


def test_every_mode_becomes_rgb_uint8(tmp_path):
    modes = {
        "rgba.png": Image.new("RGBA", (8, 8), (255, 0, 0, 255)),
        "grey.png": Image.new("L", (8, 8), 128),
        "pal.gif": Image.new("P", (8, 8), 3),
        "cmyk.jpg": Image.new("CMYK", (8, 8), (0, 255, 255, 0)),
        "deep.png": Image.new("I;16", (8, 8), 65535),
        "bw.bmp": Image.new("1", (8, 8), 1),
        "pic.webp": Image.new("RGB", (8, 8), (0, 0, 255)),
    }
    for name, im in modes.items():
        im.save(tmp_path / name)
    for name in modes:
        arr = load_image(tmp_path / name, 8)
        assert arr.shape == (8, 8, 3) and arr.dtype == np.uint8, name
    assert load_image(tmp_path / "rgba.png", 8)[0, 0].tolist() == [255, 0, 0]
    assert load_image(tmp_path / "grey.png", 8)[0, 0].tolist() == [128, 128, 128]
    assert load_image(tmp_path / "deep.png", 8)[0, 0].tolist() == [255, 255, 255]


def test_transparent_pixels_composite_over_black(tmp_path):
    Image.new("RGBA", (4, 4), (200, 100, 50, 0)).save(tmp_path / "clear.png")
    assert load_image(tmp_path / "clear.png", 4).max() == 0


def test_transparent_pixels_take_the_given_background(tmp_path):
    im = Image.new("RGBA", (4, 4), (0, 0, 0, 0))  # clear, with black under it (a common export)
    im.putpixel((0, 0), (255, 0, 0, 128))  # half-transparent red
    im.save(tmp_path / "clear.png")
    arr = load_image(tmp_path / "clear.png", 4, background=(255, 255, 255))
    assert (arr[1:, :] == 255).all() and (arr[0, 1:] == 255).all()
    assert arr[0, 0, 0] == 255 and 125 <= arr[0, 0, 1] <= 129 and arr[0, 0, 1] == arr[0, 0, 2]
    assert load_image(tmp_path / "clear.png", 4)[1:].max() == 0  # the default stays black
    loaded = load_folder(tmp_path, 4, background=(10, 20, 30))
    assert loaded.images[0, 3, 3].tolist() == [10, 20, 30]


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (8, 4), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 4, 4))  # white left half
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "rot.jpg", exif=exif, quality=100)
    arr = load_image(tmp_path / "rot.jpg", 4)  # displayed: 4 wide, 8 tall, white on top
    upright = np.asarray(Image.open(tmp_path / "rot.jpg").rotate(-90, expand=True))
    assert upright.shape == (8, 4, 3)
    assert arr[0].mean() > 200 and arr[-1].mean() < 50


def test_gif_uses_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    r, g, _b = load_image(tmp_path / "anim.gif", 4)[0, 0].tolist()
    assert r > 200 and g < 50


def test_short_side_resize_then_centre_crop(tmp_path):
    im = Image.new("RGB", (12, 4), (255, 0, 0))
    im.paste((0, 255, 0), (4, 0, 8, 4))  # green middle third
    im.save(tmp_path / "wide.png")
    arr = load_image(tmp_path / "wide.png", 4)
    assert arr.shape == (4, 4, 3)
    assert (arr[:, :, 1] == 255).all() and (arr[:, :, 0] == 0).all()


def test_captions_from_metadata_and_sidecars_recursively(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.png", "sub/b.png", "sub/c.jpg", ".hidden.png"):
        Image.new("RGB", (4, 4)).save(tmp_path / name)
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "text": "A"}))
    (tmp_path / "sub/metadata.jsonl").write_text(json.dumps({"file_name": "b.png", "text": "B"}))
    (tmp_path / "sub/c.txt").write_text("C\n")
    (tmp_path / "notes.txt").write_text("not an image")
    recs = scan_folder(tmp_path)
    assert [(r.name, r.caption) for r in recs] == [("a.png", "A"), ("sub/b.png", "B"),
                                                   ("sub/c.jpg", "C")]


def test_unreadable_files_are_listed_not_fatal(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG truncated")
    (tmp_path / "empty.jpg").write_bytes(b"")
    loaded = load_folder(tmp_path, 4)
    assert [r.name for r in loaded.records] == ["good.png"]
    assert sorted(n for n, _ in loaded.failed) == ["bad.png", "empty.jpg"]
    assert loaded.images.shape == (1, 4, 4, 3)
    with pytest.raises(DataError, match="not a folder"):
        scan_folder(tmp_path / "missing")


def test_broken_metadata_names_the_line(tmp_path):
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "a.png", "text": "ok"}\n{oops\n')
    with pytest.raises(DataError, match=r"metadata.jsonl:2"):
        scan_folder(tmp_path)


def test_psnr_closed_form_and_identity():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a + 10
    assert psnr(a, b)[0] == pytest.approx(10 * math.log10(255**2 / 100))
    assert mean_psnr(a, a) == math.inf


def test_ssim_identity_and_constant_images_closed_form():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
    assert ssim(a, a)[0] == pytest.approx(1.0)
    x, y = np.full((1, 16, 16, 3), 100, np.uint8), np.full((1, 16, 16, 3), 150, np.uint8)
    c1 = (0.01 * 255) ** 2  # no variance: SSIM reduces to the luminance term
    assert ssim(x, y)[0] == pytest.approx((2 * 100 * 150 + c1) / (100**2 + 150**2 + c1))
    assert ssim(a, 255 - a)[0] < 0
