"""The batch options of dossr_client.py and the batch run: plan, skip what is done, run on
the servers, print the summary, write the report, exit status."""

from __future__ import annotations

import argparse
import os
import sys

from . import inputs, knobs, report
from .progress import Progress
from .scheduler import Job, Scheduler, reachable

ORDERS = ("1", "2", "3", "3-corrected")
MODES = ("sde", "ode")
EXIT_FAILED = 1
EXIT_CANCELLED = 130


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options that shape a batch, and the workflow settings shared with single runs."""
    w = p.add_argument_group("workflow settings (each needs a node for it in the workflow)")
    w.add_argument("--scale", type=float, help="upscale factor (DoSSR LR Encode scale)")
    w.add_argument("--steps", type=positive_int, help="sampling steps")
    w.add_argument("--order", choices=ORDERS, help="solver order")
    w.add_argument("--mode", choices=MODES, help="sde, or ode (deterministic, seed-free)")
    w.add_argument("--tiling", choices=("on", "off"),
                   help="default: the workflow's own setting (the shipped ones tile by "
                        "themselves when the image is larger than one tile). on: tiles at every "
                        "size above one tile, the least memory (DoSSR Tiled Sampling mode always); "
                        "off: never tiles (mode off)")
    w.add_argument("--tile-size", type=positive_int, help="tile size in pixels")
    b = p.add_argument_group("batch (several inputs, a folder, a pattern or several servers)")
    b.add_argument("--batch", action="store_true",
                   help="name results after their inputs even for a single image")
    b.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders")
    b.add_argument("--suffix", help="added to each result's name (default _x<scale>, e.g. _x4)")
    b.add_argument("--overwrite", action="store_true",
                   help="redo images whose result exists (default: skip them, so a rerun resumes)")
    b.add_argument("--per-image-seed", action="store_true",
                   help="derive each image's seed from --seed and its path (reproducible)")
    b.add_argument("--report", metavar="JSON", help="write a JSON report of every image here")
    b.add_argument("-q", "--quiet", action="store_true", help="print only failures and the summary")
    b.add_argument("--tries", type=positive_int, default=3,
                   help="attempts per image when servers go away (default 3)")
    b.add_argument("--server-wait", type=float, default=120.0, metavar="SECONDS",
                   help="how long to wait for a server that went away (default 120)")


def split_servers(values, default: str, normalise) -> list[str]:
    """--server given any number of times, each maybe a comma list; duplicates dropped."""
    servers = []
    for value in values or [default]:
        for part in str(value).split(","):
            if part.strip():
                url = normalise(part)
                if url not in servers:
                    servers.append(url)
    return servers


def wants_batch(args) -> bool:
    """Batch mode: several inputs, a folder, a pattern, several servers, or a batch option."""
    specs = [args.image, *args.more]
    return bool(args.batch or args.more or len(args.servers) > 1 or args.recursive
                or args.report or args.suffix is not None or args.per_image_seed
                or any(os.path.isdir(s) or inputs.has_magic(s) for s in specs))


def workflow_settings(args) -> dict:
    return {"scale": args.scale, "steps": args.steps, "order": args.order, "mode": args.mode,
            "tiling": None if args.tiling is None else args.tiling == "on",
            "tile_size": args.tile_size}


def run(args, api) -> int:
    """The batch described by *args*; *api* is the client module (HTTP and prompt helpers)."""
    try:
        template = knobs.apply(api.load_workflow(args.workflow), **workflow_settings(args))
        if args.per_image_seed and args.seed is None:
            raise api.ClientError("--per-image-seed needs --seed (the base seed)")
        # the settings that every image shares; fails early on a workflow that cannot take them
        template = api.prepare_prompt(template, "placeholder.png", sd_checkpoint=args.sd_checkpoint,
                                      dossr_model=args.dossr_model, seed=args.seed)
        suffix = args.suffix if args.suffix is not None else knobs.default_suffix(template)
        items = inputs.plan([args.image, *args.more], args.output_dir, suffix, args.recursive)
    except (api.ClientError, knobs.KnobError, inputs.InputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return api.EXIT_ERROR
    live = [s for s in args.servers if reachable(api, s)]
    if not live:
        print(f"error: {api._unreachable(args.servers[0], 'connection refused')}"
              if len(args.servers) == 1 else
              "error: none of the servers answers: " + ", ".join(args.servers), file=sys.stderr)
        return api.EXIT_ERROR
    for s in args.servers:
        if s not in live:
            print(f"warning: {s} does not answer now; it gets images once it does", file=sys.stderr)

    results: dict[int, report.Result] = {}
    jobs = []
    for i, item in enumerate(items):
        if inputs.is_done(item) and not args.overwrite:
            results[i] = report.Result(str(item.source), str(item.output), report.SKIPPED)
            continue
        seed = knobs.image_seed(args.seed, item.relative) if args.per_image_seed else args.seed
        jobs.append(Job(i, item, seed))

    progress = Progress(len(items), quiet=args.quiet)
    progress.finished_count = len(results)
    if results:
        progress.message(f"{len(results)} of {len(items)} images already done in "
                         f"{args.output_dir}: skipped")

    def prepare(prompt, name, seed):
        return api.prepare_prompt(prompt, name, seed=seed)

    scheduler = Scheduler(api, args.servers, template, prepare, progress, timeout=args.timeout,
                          tries=args.tries, server_wait=args.server_wait, overwrite=args.overwrite)
    status = None
    try:
        results.update(scheduler.run(jobs))
    except KeyboardInterrupt:
        status = EXIT_CANCELLED
        progress.message("cancelled: this client's prompts were removed from the servers",
                         always=True)
    progress.close()
    for i, item in enumerate(items):
        if i not in results:
            results[i] = report.Result(str(item.source), str(item.output), report.CANCELLED)
    ordered = [results[i] for i in range(len(items))]
    print(report.summary(ordered), file=sys.stderr)
    if args.report:
        try:
            report.write_json(args.report, ordered,
                              lambda path, data: inputs.write_atomically(path, data, overwrite=True))
        except OSError as e:
            print(f"error: cannot write the report {args.report}: {e.strerror}", file=sys.stderr)
            return status or EXIT_FAILED
    return status if status is not None else report.exit_status(ordered)
