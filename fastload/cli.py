"""The `fastload` command line: demo-data, pack, info, verify, bench, preview, demo, train, val, detect, export.

`--json` prints exactly one JSON object as the last line of stdout; human output goes to stderr.
Exit codes: 0 done, 1 the job failed, 2 bad usage or bad input (one line naming the file and the reason), 130
Ctrl-C.
"""

from __future__ import annotations

import json
import os
import tempfile
import time

import click
import lmdb
from tqdm import tqdm

from fastload.errors import FastloadError, JobFailed, os_error_line
from fastload.interrupt import Interrupted


def emit(result: dict, as_json: bool, lines: list[str]) -> None:
    for line in lines:
        click.echo(line, err=True)
    if as_json:
        click.echo(json.dumps(result))


POSITIVE = click.IntRange(min=1)


class FastloadGroup(click.Group):
    """Failures from around the job end in one line too: Ctrl-C (`Error: interrupted`, exit 130; click would say
    "Aborted!", exit 1) and the machine's (a full disk, a path that cannot be written: exit 1), not a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted("interrupted") from None
        except (OSError, lmdb.Error) as e:
            raise JobFailed(os_error_line(e)) from None


def device_option(value: str) -> str:
    """--device as YOLOv5 also writes it: a GPU's number (0) is cuda:0; several (0,1) are torchrun's job."""
    if value and "," in value:
        raise FastloadError(f"--device {value}: one device a process; for several GPUs run "
                            f"torchrun --nproc-per-node {len(value.split(','))} -m fastload ...")  # fmt: skip
    return f"cuda:{value}" if value.isdigit() else value


DEVICE_CPU = click.option("--device", default="cpu", show_default=True, callback=lambda c, p, v: device_option(v),
                          help="cpu, cuda or cuda:N (or N).")  # fmt: skip
DEVICE_AUTO = click.option("--device", default="", callback=lambda c, p, v: device_option(v),
                           help="cpu, cuda or cuda:N (or N; default: cuda if there is one).")  # fmt: skip
FRACTION = click.FloatRange(min=0, max=1, min_open=True)


def autosplit_option(ctx, param, value: str | None) -> tuple[float, ...] | None:
    """--autosplit TRAIN,VAL[,TEST] as weights summing to 1."""
    from fastload.pack.autosplit import parse_weights

    try:
        return parse_weights(value) if value else None
    except FastloadError as e:
        raise click.BadParameter(str(e).split(": ", 1)[1]) from None


AUTOSPLIT_HELP = "Split every image anew into train, val (, test) by these weights, each by a hash of its path."
SHARE = click.FloatRange(0, 1)
BACKGROUND_HELP = (
    "Keep this share of the train split's images without objects (0: none, 1: all; chosen by a hash of their path)."
)
DEDUPE_HELP = (
    "Leave out images stored twice byte for byte (a val or test image's train copy goes); 'near': also re-encoded, "
    "resized and mirrored copies; 'crops': cropped ones too (as verify --duplicates [--crops] finds them)."
)
DEDUPE_OPTION = click.option(  # a bare --dedupe is exact (True); near and crops as given
    "--dedupe", type=click.Choice(["exact", "near", "crops"]), is_flag=False, flag_value="exact", default=None,
    callback=lambda _c, _p, v: {None: False, "exact": True}.get(v, v), help=DEDUPE_HELP,
)  # fmt: skip
CLASSES_HELP = (
    "Only these classes, numbered anew in this order (person,car); merge some into one (bag=suitcase+handbag)."
)


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


@click.group(cls=FastloadGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fastload")
def main() -> None:
    """fastload: packed image stores and GPU data loading for YOLOv5-family detectors."""


@main.command("demo-data")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--images", default=500, show_default=True, type=POSITIVE, help="Number of images (train + val).")
@click.option("--seed", default=0, show_default=True, help="Seed; the same seed gives the same files.")
@click.option("--val-fraction", default=0.2, show_default=True, type=click.FloatRange(0, 1), help="Share in val.")
@click.option("--scale", default=1.0, show_default=True, type=click.FloatRange(0.1, 8), help="Size (1.0: ~640x480).")
@click.option("--workers", default=default_workers(), show_default=True, type=POSITIVE, help="Processes.")
@click.option("--polygons", is_flag=True, help="Label rows as the shapes' polygons (YOLOv5's segment rows).")
@click.option("--classify", is_flag=True, help="One shape a picture, in class folders <split>/<class>/ (ImageNet's).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def demo_data(out: str, images: int, seed: int, val_fraction: float, scale: float, workers: int, polygons: bool,
              classify: bool, as_json: bool):  # fmt: skip
    """Generate the synthetic detection dataset (YOLO layout + data.yaml) into OUT.

    \b
    Examples:
      fastload demo-data runs/demo-data --images 1000 --seed 0
      fastload demo-data runs/shapes-cls --images 1000 --classify   # a classification dataset
    """
    from fastload.demo_data import DemoConfig, generate

    if polygons and classify:
        raise FastloadError("--polygons labels objects; --classify writes class folders without labels: one of them")
    cfg = DemoConfig(images, seed, val_fraction, scale, polygons=polygons, classify=classify)
    with tqdm(total=images, desc="demo-data", unit="img", disable=None, leave=False) as bar:
        summary = generate(out, cfg, workers, bar.update)
    emit(summary, as_json, [f"wrote {summary['train']} train + {summary['val']} val images to {summary['path']}"])


def dataset_options(command):
    """--autosplit, --classes, --background, --dedupe, --tile and --tile-overlap: how a dataset is packed (`pack`;
    `train`, through the cache)."""
    for option in reversed([
        click.option("--autosplit", metavar="TRAIN,VAL[,TEST]", callback=autosplit_option, help=AUTOSPLIT_HELP),
        click.option("--classes", metavar="A,B=C+D", default=None, help=CLASSES_HELP),
        click.option("--background", type=SHARE, default=None, metavar="SHARE", help=BACKGROUND_HELP),
        DEDUPE_OPTION,
        click.option("--tile", default=0, type=click.IntRange(min=0), metavar="SIZE",
                     help="Cut larger images into overlapping SIZE x SIZE tiles (small objects keep their pixels)."),
        click.option("--tile-overlap", default=0.2, show_default=True, type=click.FloatRange(0, 1, max_open=True),
                     help="Share of a tile's side that neighbouring tiles overlap."),
        click.option("--tile-whole", is_flag=True, help="With --tile: keep each cut picture whole too (big objects)."),
    ]):  # fmt: skip
        command = option(command)
    return command


@main.command()
@click.argument("src", type=str, nargs=-1, required=True)
@click.option("-o", "--out", default=None, help="Store to write (LMDB file or Zarr directory/URL); not with --dry-run.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["lmdb", "zarr"]),
    default=None,
    help="Default: zarr for *.zarr or a URL, else lmdb.",
)
@click.option("--max-side", type=click.IntRange(min=32), default=None, help="Shrink larger images to this long side.")
@click.option(
    "--quality", type=click.IntRange(50, 100), default=95, show_default=True, help="JPEG quality of re-encoded images."
)
@click.option("--workers", type=click.IntRange(min=1), default=default_workers(), show_default=True)
@click.option("--strict", is_flag=True, help="Stop with exit 2 at the first bad input.")
@click.option("--coco-images", type=click.Path(), default=None, help="Image folder of a COCO JSON source.")
@click.option("--split", default=None, help="Split name for a COCO JSON source (default: from its file name).")
@click.option(
    "--reuse",
    "reuse_from",
    default=None,
    metavar="STORE",
    help="Copy the records of unchanged inputs (same size and mtime) from this earlier store of SRC. "
    "Default: OUT, when it was packed from SRC with the same options.",
)
@click.option("--no-reuse", is_flag=True, help="Pack every input again.")
@dataset_options
@click.option("--tile-min-visible", type=FRACTION, default=0.1, show_default=True,
              help="Keep an object in a tile showing at least this share of its area.")  # fmt: skip
@click.option(
    "--dry-run", is_flag=True, help="Only say how SRC reads (kind, names, splits, labels, tiles); write nothing."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def pack(
    src, out, fmt, max_side, quality, workers, strict, coco_images, split, reuse_from, no_reuse, autosplit, classes,
    background, dedupe, tile, tile_overlap, tile_whole, tile_min_visible, dry_run, as_json,
):  # fmt: skip
    """Pack SRC (YOLO, Darknet, LabelMe, COCO or Pascal VOC folder, data.yaml, COCO JSON, a classification dataset's
    class folders, an archive of one, or a store to convert) into a store. An archive (.zip, .tar, .tar.gz, .tar.bz2,
    .tar.xz; or its URL) is unpacked beside OUT while it is packed; several archives are unpacked into one folder (a
    dataset that comes in parts).

    \b
    Examples:
      fastload pack datasets/coco128 -o coco128.lmdb
      fastload pack coco128.zip -o coco128.lmdb   # as the folder it holds
      fastload pack VOCtrainval_06-Nov-2007.tar VOCtest_06-Nov-2007.tar VOCtrainval_11-May-2012.tar -o voc.lmdb
      fastload pack https://github.com/ultralytics/assets/releases/download/v0.0.0/coco128.zip -o coco128.lmdb
      fastload pack data.yaml -o data.zarr --max-side 1024
      fastload pack instances_val2017.json --coco-images val2017 -o val.lmdb
      fastload pack datasets/coco -o coco.lmdb   # annotations/instances_{train,val}2017.json: both splits
      fastload pack imagenette160/ -o imagenette.lmdb   # <split>/<class>/*.jpg: one class a picture
      fastload pack datasets/VOC/images/VOCdevkit -o voc.lmdb   # train: 07+12 trainval, val: 07 test
      fastload pack coco128.lmdb -o coco128.zarr
      fastload pack datasets/coco128 -o coco128.lmdb   # again, after an edit: copies what did not change
      fastload pack labelled/ -o labelled.lmdb --autosplit 0.9,0.1   # one folder: 90% train, 10% val
      fastload pack coco.yaml -o people.lmdb --classes person,bag=backpack+handbag+suitcase
      fastload pack coco.yaml -o people.lmdb --classes person --background 0.1   # a tenth of the rest kept
      fastload pack export.zip --dry-run   # how fastload reads it: kind, names, splits, labels found
      fastload pack merged/ -o merged.lmdb --dedupe   # images stored twice packed once
      fastload pack export/ -o data.lmdb --dedupe near   # re-encoded, resized, mirrored copies too
      fastload pack visdrone/ -o tiles.lmdb --tile 640   # large images as 640 x 640 tiles, overlapping by 20%
    """
    from fastload.label_check import KINDS, check_labels, counts_text
    from fastload.pack import PackOptions
    from fastload.pack import pack as run_pack
    from fastload.pack.packer import earlier_pack
    from fastload.pack.thinning import duplicate_lines
    from fastload.pack.tiles import Tiling
    from fastload.store import format_for

    src = src[0] if len(src) == 1 else list(src)
    if dry_run:
        tiling = Tiling(tile, tile_overlap, tile_min_visible, tile_whole) if tile else None
        opts = PackOptions(max_side=max_side, coco_images=coco_images, split=split, autosplit=autosplit, tile=tiling)
        return _dry_run(src, out, opts, as_json)
    if not out:
        raise click.UsageError("Missing option '-o' / '--out'.")
    fmt = fmt or format_for(out)
    t0 = time.perf_counter()
    reuse_from = None if no_reuse else reuse_from or earlier_pack(out, src)
    opts = PackOptions(
        fmt, max_side, quality, workers, strict, coco_images, split, reuse_from, autosplit, classes, background, dedupe,
        Tiling(tile, tile_overlap, tile_min_visible, tile_whole) if tile else None,
    )  # fmt: skip
    meta = run_pack(src, out, opts)
    secs = time.perf_counter() - t0

    count = sum(s["count"] for s in meta["splits"].values())
    result = {
        "store": out,
        **meta,
        "format": fmt,
        "images_per_sec": round(count / max(secs, 1e-9), 1),
        "seconds": round(secs, 3),
    }
    per_split = ", ".join(f"{name} {split['count']}" for name, split in meta["splits"].items())
    lines = [f"packed {count} images ({per_split}) into {out} ({fmt}) in {secs:.1f}s, {len(meta['skipped'])} skipped"]
    lines += tile_lines(meta)
    if "reused" in meta["pack"]:
        reused = meta["pack"]["reused"]
        lines.append(f"  {reused['records']} of them copied from {reused['from']}: their inputs had not changed")
    lines += [f"  skipped {s['path']}: {s['reason']}" for s in meta["skipped"][:20]]
    found = check_labels(out, quiet=True, most=0)  # from the stored boxes, in numpy: ~1 s for 100,000 images
    result["label_warnings"] = {kind: found[kind] for kind in KINDS}
    if any(result["label_warnings"].values()):
        lines.append(f"  warning: labels that look wrong: {counts_text(found)} (`fastload verify {out} --labels`)")
    lines += [
        f"  {name}: {split['background']} of {split['count']} images have none of the chosen classes (kept as "
        "background images)"
        for name, split in meta["splits"].items()
        if split.get("background")
    ]
    lines += [
        f"  {name}: {split['background_dropped']} images without objects left out (--background {background:g})"
        for name, split in meta["splits"].items()
        if split.get("background_dropped")
    ]
    lines += duplicate_lines(meta)
    rule = {
        "voc": "Pascal VOC: the image's <name>.xml in its annotations folder",
        "labelme": "LabelMe: the image's <name>.json beside it",
    }.get(
        meta["pack"].get("source_kind"),
        "YOLOv5's rule finds labels: the last /images/ in the path becomes /labels/, the suffix .txt",
    )
    lines += [
        f"  {name}: {split['missing_labels']} of {split['count']} images have no label file, packed without boxes "
        f"({rule})"
        for name, split in meta["splits"].items()
        if split.get("missing_labels")
    ]
    emit(result, as_json, lines)


def tile_lines(meta: dict) -> list[str]:
    """What --tile made of each split: its images, their tiles, the objects no tile kept."""
    tile = meta["pack"].get("tile")
    if not tile:
        return []
    return [
        f"  {name}: {split['images']} images cut into {split['count']} tiles of {tile['size']} px (overlap "
        f"{tile['overlap']:g})" + (", and kept whole" if tile.get("whole") else "") + (
            f"; {split['objects_lost']} objects in no tile at {tile['min_visible']:g} of their area (larger than a "
            f"tile: {'in the whole pictures' if tile.get('whole') else 'a larger --tile or --tile-whole keeps them'})"
            if split["objects_lost"] else "")
        for name, split in meta["splits"].items()
    ]  # fmt: skip


def _dry_run(src: str | list[str], out: str | None, opts, as_json: bool) -> None:
    from fastload.pack.dry_run import dry_run, report_lines
    from fastload.pack.packer import is_store, listed

    if isinstance(src, str) and is_store(src):
        raise FastloadError(f"{src}: a fastload store, not a dataset: `fastload info {src}` describes it")
    where = out or os.path.join(tempfile.gettempdir(), "fastload-dry-run")  # where an archive is unpacked to look
    result = dry_run(src, lambda path: listed(path, opts), where, opts.tile, opts.max_side, not as_json)
    emit(result, as_json, report_lines(result))


@main.command()
@click.argument("out", type=click.Path(file_okay=False), default="runs/demo")
@click.option("--images", default=500, show_default=True, type=POSITIVE, help="Size of the generated dataset.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def demo(out: str, images: int, as_json: bool):
    """The main job on the built-in default: generate the demo dataset, pack it (LMDB and Zarr),
    verify both stores, measure their read rate and bench the augmenting DALI loader briefly.

    Example: fastload demo runs/demo
    """
    from fastload.demo import run_demo

    result = run_demo(out, images)
    lines = [f"demo dataset: {result['dataset']}"]
    for fmt, r in result["stores"].items():
        lines.append(
            f"  {fmt}: {r['path']} packed at {r['pack_images_per_sec']:.0f} img/s, "
            f"{r['disk_bytes'] / 1e6:.1f} MB, verify ok={r['verify_ok']}, "
            f"random reads {r['read_images_per_sec']:.0f} img/s"
        )
    b = result["loader_bench"]
    lines.append(
        f"  loader (DALI {b['device']}, mosaic, {b['imgsz']} px, batch {b['batch']}): {b['images_per_sec']:.0f} img/s, "
        f"{b['rss_peak_mb']:.0f} MB with workers ({b['private_peak_mb']:.0f} MB private)"
    )
    emit(result, as_json, lines)


from fastload import cli_deploy, cli_loaders, cli_model, cli_stores, cli_val  # noqa: E402, F401  (register train,
# model; bench, preview; detect, export; info, verify, unpack, merge; val)
