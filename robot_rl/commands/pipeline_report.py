"""report.md of a pipeline run: the per-stage table, learning curves and latency histograms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from robot_rl.core.results import success_interval


def _fmt(v, spec: str = ".2f") -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    return format(v, spec)


def stage_table(rows: list[dict]) -> str:
    """One row per stage: success with its Wilson 95 % interval and, after BC, the gain over BC in points."""
    bc = next((r.get("success_rate") for r in rows if r["name"] == "bc"), None)
    lines = ["| stage | success (95 % interval) | vs BC | episodes | env steps | time to success (s) "
             "| latency p50 / p99 (ms) | control rate (Hz) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rate, n = r.get("success_rate"), r.get("episodes") or 0
        ci = success_interval(round(rate * n), n) if rate is not None and n else None
        success = f"{_fmt(rate * 100 if rate is not None else None, '.0f')}%" + (
            f" ({ci[0] * 100:.0f}-{ci[1] * 100:.0f})" if ci else "")
        gain = (f"{(rate - bc) * 100:+.0f}" if rate is not None and bc is not None
                and r["name"] not in ("collect", "bc") else "")
        lines.append(f"| {r['name']} | {success} | {gain} | {n} | {r.get('env_steps') or 0} | "
                     f"{_fmt(r.get('mean_time_to_success_s'))} | "
                     f"{_fmt(r.get('latency_ms_p50'))} / {_fmt(r.get('latency_ms_p99'))} | "
                     f"{_fmt(r.get('control_rate_hz'), '.1f')} |")
    return "\n".join(lines)


def _curves(out: Path, rows: list[dict]) -> dict[str, list[dict]]:
    curves = {}
    for r in rows:
        res = out / r["name"] / "results.json"
        if res.exists():
            curve = json.loads(res.read_text()).get("curve")
            if curve:
                curves[r["name"]] = curve
    return curves


def plot_curves(curves: dict[str, list[dict]], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = {k: [p for p in v if p.get("success_rate") is not None and np.isfinite(p["success_rate"])]
              for k, v in curves.items()}
    points = {k: v for k, v in points.items() if v}
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, pts in points.items():
        ax.plot([p["env_steps"] for p in pts], [p["success_rate"] for p in pts], marker="o", label=name)
    ax.set(xlabel="environment steps", ylabel="success rate (fixed seeds)", ylim=(-0.02, 1.02),
           title="RL stages: success vs environment steps")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_latency(rows: list[dict], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = {r["name"]: np.asarray(r["latencies_ms"]) for r in rows if r.get("latencies_ms")}
    if not data:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    hi = max(np.percentile(v, 99.5) for v in data.values())
    bins = np.linspace(0, hi * 1.05, 60)
    for name, v in data.items():
        ax.hist(np.clip(v, 0, bins[-1]), bins=bins, alpha=0.55, label=f"{name} (p50 {np.median(v):.2f} ms)")
    ax.set(xlabel="batch-1 act() latency (ms)", ylabel="policy calls", title="Policy latency during evaluation")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(out: Path, rows: list[dict], skipped: list[str], cfg) -> Path:
    from robot_rl.core.results import machine_summary

    lines = [f"# robot_rl pipeline: {cfg.task.get('id') or cfg.task.name}, {cfg.obs} observations, "
             f"profile {cfg.profile}", "",
             f"Machine: {machine_summary()}", "", stage_table(rows), ""]
    if skipped:
        lines += ["Skipped: " + "; ".join(skipped), ""]
    episodes = cfg.profiles[cfg.profile].eval_episodes
    lines += ["Success rates of policy stages are measured on the same fixed seeds "
              f"({episodes} evaluation episodes each); the deploy stage runs the "
              "last policy through the policy runner and the 1 kHz impedance loop process. Env steps: the "
              "interaction a stage used (demonstrations, RL rollouts, deployment), evaluation not counted.", ""]
    bc_curves = out / "bc" / "curves.png"
    if bc_curves.exists():
        lines += ["## Imitation training", "", "![bc training curves](bc/curves.png)", ""]
    curves = plot_curves(_curves(out, rows), out / "rl_curves.png")
    if curves is not None:
        lines += ["## RL stages", "", f"![success vs environment steps]({curves.name})", ""]
    hist = plot_latency(rows, out / "latency.png")
    if hist is not None:
        lines += ["## Policy latency", "", f"![latency histograms]({hist.name})", ""]
    lines += ["## Commands", "", "```", *[r["command"] for r in rows], "```", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
