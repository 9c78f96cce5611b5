#!/usr/bin/env python3
"""Charts of a `shardlab bench` run (its bench.json): per-rank peak memory by ledger tag with the
ZeRO theory as a marker, step time per preset, and communication volume with the hidden fraction.

    python3 tools/plot_bench.py out/bench/bench.json [--out DIR] [--prefix NAME]

writes DIR/NAME_memory.png, DIR/NAME_step_time.png and DIR/NAME_communication.png (DIR: the JSON's
folder; NAME: the JSON's file name without .json). Needs matplotlib (Debian: python3-matplotlib).
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

MIB = 1024.0 * 1024.0
# Model state at the bottom of each stack, so the theory marker can be read against its top.
TAGS = ["parameter", "gradient", "optimizer_state", "activation", "communication", "workspace", "other"]
TAG_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#7f7f7f"]
KINDS = ["all_reduce", "reduce_scatter", "all_gather", "broadcast"]
KIND_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"]


def subtitle(bench):
    m = bench["machine"]
    return (f"{bench['config']}, world size {bench['world_size']}, {bench['timed_steps']} timed steps after "
            f"{bench['warmup_steps']} warm-up\n{m['cpu_model']}, {m['nproc']} cores, load average "
            f"{m['load_before'].split()[0]} before, {m.get('load_after', '?').split()[0]} after")


def plot_memory(bench, path):
    presets = bench["presets"]
    world = bench["world_size"]
    fig, ax = plt.subplots(figsize=(max(7.0, min(14.0, 0.55 * len(presets) * world + 4)), 5))
    width = 0.8 / world
    for p_index, p in enumerate(presets):
        theory = p["model_state_theory_bytes"]["total"] / MIB
        for r in p["ranks"]:
            x = p_index + (r["rank"] - (world - 1) / 2) * width
            bottom = 0.0
            for tag, color in zip(TAGS, TAG_COLORS):
                h = r["peak_bytes"][tag] / MIB
                ax.bar(x, h, width * 0.9, bottom=bottom, color=color,
                       label=tag if p_index == 0 and r["rank"] == 0 else None)
                bottom += h
            ax.plot([x - width * 0.45, x + width * 0.45], [theory, theory], color="black", linewidth=2.5,
                    label="ZeRO theory: model state" if p_index == 0 and r["rank"] == 0 else None)
            if world > 1:
                ax.text(x, -0.02, f"r{r['rank']}", ha="center", va="top", fontsize=7,
                        transform=ax.get_xaxis_transform())
    ax.set_xticks(range(len(presets)))
    ax.set_xticklabels([p["preset"] for p in presets])
    ax.tick_params(axis="x", pad=12 if world > 1 else 4)
    ax.set_ylabel("MiB (per-tag peaks over the timed steps, stacked)")
    ax.set_title("Peak memory per rank by ledger tag (black: the ZeRO paper's model state)\n" + subtitle(bench),
                 fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_step_time(bench, path):
    presets = bench["presets"]
    fig, ax = plt.subplots(figsize=(max(6.5, 1.2 * len(presets) + 2), 4.8))
    names = [p["preset"] for p in presets]
    medians = [1e3 * p["median_step_seconds"] for p in presets]
    lows = [m - 1e3 * min(p["step_seconds"]) for m, p in zip(medians, presets)]
    highs = [1e3 * max(p["step_seconds"]) - m for m, p in zip(medians, presets)]
    bars = ax.bar(names, medians, color="#4c72b0", yerr=[lows, highs], capsize=4)
    for bar, p in zip(bars, presets):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() / 2, f"{p['tokens_per_second']:.0f}\ntok/s",
                ha="center", va="center", color="white", fontsize=8)
    ax.set_ylabel("step time, ms (median; whiskers: min-max)")
    ax.set_title("Step time per preset (slowest rank per step)\n" + subtitle(bench), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_communication(bench, path):
    presets = bench["presets"]
    names = [p["preset"] for p in presets]
    fig, (vol, hid) = plt.subplots(1, 2, figsize=(max(9.0, 2.0 * len(presets) + 4), 4.5),
                                   gridspec_kw={"width_ratios": [2, 1]})
    width = 0.38
    for offset, field, hatch in ((-width / 2, "payload_bytes", None), (width / 2, "wire_bytes", "//")):
        bottom = [0.0] * len(presets)
        for kind, color in zip(KINDS, KIND_COLORS):
            h = [p["ranks"][0]["collectives_per_step"][kind][field] / MIB for p in presets]
            if not any(h):
                continue  # a kind no preset used (broadcast happens only when the engine is built)
            label = kind if field == "payload_bytes" else None
            vol.bar([i + offset for i in range(len(presets))], h, width * 0.95, bottom=bottom, color=color,
                    hatch=hatch, edgecolor="white", label=label)
            bottom = [b + x for b, x in zip(bottom, h)]
    vol.set_xticks(range(len(presets)))
    vol.set_xticklabels(names)
    vol.set_ylabel("MiB per step (rank 0)")
    vol.set_title("Bytes per collective kind: solid = payload, hatched = ring wire bytes", fontsize=9)
    vol.legend(fontsize=8)
    means = [p["hidden_fraction"] if p["hidden_fraction"] is not None else 0.0 for p in presets]
    hid.bar(names, [100 * m for m in means], color="#55a868")
    for i, p in enumerate(presets):
        ranks = [r["hidden_fraction"] for r in p["ranks"] if r["hidden_fraction"] is not None]
        hid.plot([i] * len(ranks), [100 * h for h in ranks], "k.", label="per rank" if i == 0 else None)
    hid.set_ylim(0, 100)
    hid.set_ylabel("% of collective time hidden")
    hid.set_title("Overlap: 1 - blocked in wait() / in flight", fontsize=9)
    hid.legend(fontsize=8)
    hid.tick_params(axis="x", labelrotation=30)
    fig.suptitle(subtitle(bench), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_json")
    parser.add_argument("--out", help="folder for the PNGs (default: the JSON's folder)")
    parser.add_argument("--prefix", help="file name prefix (default: the JSON's name without .json)")
    args = parser.parse_args()
    try:
        with open(args.bench_json) as f:
            bench = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"plot_bench.py: cannot read '{args.bench_json}': {e}")
    if bench.get("bench") != "shardlab bench" or not bench.get("presets"):
        sys.exit(f"plot_bench.py: '{args.bench_json}' is not the JSON of a shardlab bench run")
    out = args.out or os.path.dirname(os.path.abspath(args.bench_json))
    prefix = args.prefix or os.path.splitext(os.path.basename(args.bench_json))[0]
    os.makedirs(out, exist_ok=True)
    for name, plot in (("memory", plot_memory), ("step_time", plot_step_time), ("communication", plot_communication)):
        path = os.path.join(out, f"{prefix}_{name}.png")
        plot(bench, path)
        print(path)


if __name__ == "__main__":
    main()
