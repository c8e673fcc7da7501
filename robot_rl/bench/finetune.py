"""`robot-rl bench finetune [json=<file>] [out=<dir>] [quick=true] [finetune.<option>=...]`

Fine-tuning methods side by side on the twin (state observations, CPU), per task of `tasks`
(default lift and insert; a Gymnasium id with the `gym` option, docs/environments.md): one mixed-quality
demo set (`collect noise=0.3`), one BC base trained on it, then for `seeds` seeds (a count, or a list:
one job's share) and the same online budget (`env_steps`, evaluated every `eval_every` steps on the same fixed seeds):
    bc                 the BC base alone (its success at 0 env steps)
    residual           robot-rl finetune algo=residual (the default online path)
    filtered_bc        robot-rl finetune algo=filtered_bc (the policy imitates its own successful episodes)
    ppo, dsrl          robot-rl finetune algo=ppo | dsrl
    offline_residual   algo=offline rounds, then residual on their policy; the rounds' env steps count
    rlpd               algo=rlpd: from scratch with the demos in the batch
An algorithm whose module does not import is reported "not available"; a run that raises, "failed".
Rows per task (suffix _<task>): final_success_<m> (mean over seeds; _vs_bc ratio), offline_success_vs_bc
(the offline rounds' policy alone, mean over the offline_residual seeds), env_steps_to_90_<m>
and _95_ (median over seeds of the first evaluation at or above the threshold; null when most seeds
never get there) with the real-robot minutes at the policy rate, and env_steps_to_90_residual_vs_rlpd
(ratio = speed-up). Writes into out (default runs/bench/finetune/<stamp>, or beside json=): every run's
directory, finetune_curves.png (success vs env steps, mean +- std over seeds), finetune_curves.json
(raw curves) and the table. With heldout_episodes > 0 (default 50), every final policy (and the BC base)
is also evaluated on that many episodes on seeds 200000 + i, which no curve uses: rows
heldout_success_<m>_vs_bc (mean over seeds), the finer measure (a 20-episode evaluation's standard error
is about 10 points). Finished runs are reused when the same out is given again; with
`finetune.report_only=true` nothing runs: the table and plot come from the finished runs in out, and
a run that is missing or short of the budget is reported "not run" (e.g. seeds run as separate jobs).
"""

from __future__ import annotations

import datetime as _dt
import importlib
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.core.config import to_plain
from robot_rl.core.errors import ConfigError
from robot_rl.core.results import BenchRow, format_bench_table, write_bench_json

NAME = "finetune"
METHODS = ("bc", "residual", "filtered_bc", "ppo", "dsrl", "offline_residual", "rlpd")
THRESHOLDS = (0.9, 0.95)
EVAL_SEED = 100_000          # the finetune command's default online.eval_seed; `eval` uses the same seeds
HELDOUT_SEED = 200_000       # final policies' held-out evaluation: seeds no learning curve uses
DEFAULTS: dict[str, Any] = {
    "tasks": ["lift", "insert"], "methods": list(METHODS), "seeds": 3, "demos": 50, "noise": 0.3,
    "env_steps": 20_000, "eval_every": 4_000, "eval_episodes": 20, "task_params": {}, "train": [],
    "heldout_episodes": 50, "overrides": {}, "quick_sizes": {}, "report_only": False, "gym": {},
}


@dataclass
class Run:
    """One method on one task and seed: its curve (env steps, success) or why there is none."""

    method: str
    seed: int
    curve: list[tuple[int, float]] = field(default_factory=list)
    status: str = "ok"               # ok | not available | failed | not run (report_only)
    reason: str = ""
    offline_success: float | None = None   # offline_residual: the offline rounds' policy, before the residual
    heldout_success: float | None = None   # the final policy on heldout_episodes held-out seeds (None: not run)


class NotRun(Exception):
    """report_only: a stage the bench would have to run."""


def algorithm_available(algo: str) -> tuple[bool, str]:
    """Whether robot_rl.learning.rl.<algo> imports and has run(ctx); else (False, why)."""
    name = f"robot_rl.learning.rl.{algo}"
    try:
        if importlib.util.find_spec(name) is None:
            return False, f"{name} is not in this version of robot_rl"
        module = importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - a half-written module must not stop the other methods
        return False, f"{name} does not import ({type(e).__name__}: {e})"
    if not callable(getattr(module, "run", None)):
        return False, f"{name} has no run(ctx)"
    return True, ""


def steps_to(curve: list[tuple[int, float]], threshold: float) -> float:
    """Env steps of the first evaluation with success >= threshold (nan: never)."""
    for steps, success in curve:
        if success is not None and success >= threshold - 1e-9:
            return float(steps)
    return float("nan")


def median_reached(values: list[float]) -> float:
    """Median over seeds where a seed that never reached counts as infinitely slow (nan if most never did)."""
    v = np.sort(np.where(np.isnan(values), np.inf, values))
    m = float(np.median(v)) if len(v) else float("inf")
    return m if np.isfinite(m) else float("nan")


class FinetuneBench:
    def __init__(self, cfg: Any) -> None:
        get = cfg.get if hasattr(cfg, "get") else (lambda k, d=None: d)
        opts = {k: to_plain(get(k, v)) if get(k, None) is not None else v for k, v in DEFAULTS.items()}
        if get("quick", False):
            opts |= to_plain(opts["quick_sizes"] or {})
        unknown = sorted(set(opts["methods"]) - set(METHODS))
        if unknown:
            raise ConfigError(f"bench finetune.methods: unknown {unknown}; known {list(METHODS)}")
        self.o = opts
        self.device = str(get("device", "auto") or "auto")
        self.quick = bool(get("quick", False))
        out, js = get("out", None), get("json", None)
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        self.out = Path(out) if out else (Path(js).parent / NAME if js else Path("runs/bench/finetune") / stamp)
        self.task_args = [f"task.params.{k}={v}" for k, v in (opts["task_params"] or {}).items()]

    def task_sel(self, task: str, stage: str = "") -> list[str]:
        """The overrides selecting `task` in a stage: a twin task by name, any other name as a Gymnasium id with
        the `gym` option's module, kwargs, max_episode_steps, rate_hz and (collect) expert."""
        from robot_rl.sim.gym_tasks import task_overrides
        from robot_rl.sim.tasks import TASKS

        if task in TASKS:
            return [f"task={task}", *self.task_args]
        g = dict(self.o["gym"] or {})
        task_cfg = {"name": "gym", "id": task} | {k: g.get(k) for k in ("module", "kwargs", "max_episode_steps",
                                                                        "rate_hz")}
        args = task_overrides(task_cfg)
        if stage == "collect":
            if not g.get("expert"):
                raise ConfigError(f"bench finetune: task {task} is a Gymnasium id; its demos need an expert: "
                                  "finetune.gym.expert=<module>:<attr> (docs/environments.md)")
            args += ["source=expert", f"expert={g['expert']}"]
        elif stage == "train":
            from robot_rl.sim.gym_tasks import gym_state_streams, state_override

            args += [state_override(gym_state_streams(task_cfg))]
        elif stage == "residual":   # the default bounds name the twin's 7-D action's dimensions
            args += ["residual.dim_scales=null"]
        return args

    @property
    def seeds(self) -> list[int]:
        seeds = self.o["seeds"]
        return [int(x) for x in seeds] if isinstance(seeds, (list, tuple)) else list(range(int(seeds)))

    # ---- running the stages through the CLI (the same dispatch a user runs) -----------------------
    def _cli(self, args: list[str]) -> None:
        """Run one stage (collect, train, eval, finetune); with report_only, NotRun instead."""
        if self.o["report_only"]:
            raise NotRun(f"report_only: not run: robot-rl {' '.join(map(str, args))}")
        from robot_rl.cli import main

        code = main([str(a) for a in args])
        if code != 0:
            raise RuntimeError(f"robot-rl {' '.join(map(str, args))}: exit status {code}")

    @staticmethod
    def _results(path: Path) -> dict | None:
        f = path / "results.json"
        return json.loads(f.read_text()) if f.is_file() else None

    def _stage(self, out: Path, args: list, finished=lambda results: True) -> dict:
        """The results.json of the stage writing to `out`; runs `robot-rl args` first unless a finished one
        is there (one that `finished` accepts). report_only: NotRun instead of running."""
        results = self._results(out)
        if results is None or not finished(results):
            self._cli(args)
            results = self._results(out)
        return results

    def _eval(self, policy: Path | str, task: str, episodes: int, seed_offset: int, out: Path) -> float:
        """Success rate of `robot-rl eval` on seeds seed_offset + i (reused when out has it)."""
        return float(self._stage(out, ["eval", f"policy={policy}", *self.task_sel(task),
                                       f"episodes={episodes}", f"seed_offset={seed_offset}", f"out={out}",
                                       f"device={self.device}"])["success_rate"])

    def prepare(self, task: str) -> tuple[Path, Path]:
        """The task's demo store and BC base (made once, reused by every method and seed)."""
        d = self.out / task
        store = d / "demos.zarr"
        self._stage(d / "collect", ["collect", *self.task_sel(task, "collect"), f"episodes={self.o['demos']}",
                                    f"noise={self.o['noise']}", f"store={store}", f"out={d / 'collect'}",
                                    "progress=false"])
        self._stage(d / "bc", ["train", f"store={store}", *self.task_sel(task, "train"), f"out={d / 'bc'}",
                               f"train.device={self.device}", *self.o["train"]])
        return store, d / "bc" / "checkpoints" / "best"

    def _finetune(self, algo: str, base: Path, store: Path, task: str, seed: int, out: Path, env_steps: int) -> dict:
        return self._stage(out, ["finetune", f"algo={algo}", f"policy={base}", f"store={store}",
                                 *self.task_sel(task, algo), f"seed={seed}", f"out={out}", f"device={self.device}",
                                 f"online.env_steps={env_steps}", f"online.eval_every={self.o['eval_every']}",
                                 f"online.eval_episodes={self.o['eval_episodes']}", f"online.eval_seed={EVAL_SEED}",
                                 *(self.o["overrides"] or {}).get(algo, [])],
                           finished=lambda results: results.get("env_steps", 0) >= env_steps)

    def heldout(self, task: str, policy: Path | str, out: Path) -> float | None:
        """The final policy's success on heldout_episodes episodes on seeds HELDOUT_SEED + i (None: off, or
        report_only and not evaluated yet)."""
        n = int(self.o["heldout_episodes"] or 0)
        if n <= 0:
            return None
        try:
            return self._eval(policy, task, n, HELDOUT_SEED, out)
        except NotRun:
            return None

    def bc_curve(self, task: str, base: Path) -> list[tuple[int, float]]:
        return [(0, self._eval(base, task, int(self.o["eval_episodes"]), EVAL_SEED, self.out / task / "bc_eval"))]

    def run_method(self, method: str, task: str, store: Path, base: Path, seed: int) -> Run:
        algos = {"bc": [], "offline_residual": ["offline", "residual"]}.get(method, [method])
        for algo in algos:
            ok, why = algorithm_available(algo)
            if not ok:
                return Run(method, seed, status="not available", reason=why)
        out = self.out / task / method / f"seed{seed}"
        budget = int(self.o["env_steps"])
        try:
            if method == "bc":
                return Run(method, seed, self.bc_curve(task, base),
                           heldout_success=self.heldout(task, base, self.out / task / "bc_heldout"))
            if method != "offline_residual":
                r = self._finetune(method, base, store, task, seed, out, budget)
                return Run(method, seed, [(p["env_steps"], p["success_rate"]) for p in r["curve"]],
                           heldout_success=self.heldout(task, out / "policy", out / "heldout"))
            off = self._finetune("offline", base, store, task, seed, out / "offline", 0)
            used = int(off.get("env_steps") or 0)             # rollouts the offline rounds collected
            start = [(0, self.bc_curve(task, base)[0][1])]
            offline = None if off.get("success_rate") is None else float(off["success_rate"])
            if offline is not None:
                start.append((used, offline))
            r = self._finetune("residual", Path(off["policy"]), store, task, seed, out / "residual",
                               max(0, budget - used))
            return Run(method, seed, start + [(used + p["env_steps"], p["success_rate"]) for p in r["curve"]],
                       offline_success=offline,
                       heldout_success=self.heldout(task, out / "residual" / "policy", out / "heldout"))
        except NotRun as e:
            return Run(method, seed, status="not run", reason=str(e))
        except Exception as e:  # noqa: BLE001 - one broken method must not lose the others' numbers
            import traceback

            traceback.print_exc()
            return Run(method, seed, status="failed", reason=f"{type(e).__name__}: {e}")

    def run(self) -> dict[str, list[Run]]:
        runs: dict[str, list[Run]] = {}
        for task in self.o["tasks"]:
            try:
                store, base = self.prepare(task)
            except NotRun as e:
                raise ConfigError(f"bench finetune: {self.out / task} has no finished demo set and BC base "
                                  f"({e})") from None
            runs[task] = []
            for method in self.o["methods"]:
                for seed in [0] if method == "bc" else self.seeds:
                    run = self.run_method(method, task, store, base, seed)
                    runs[task].append(run)
                    if run.status == "not available":
                        print(f"bench finetune: {method} not available: {run.reason}")
                        break
        return runs


# ---- rows, plot, report ------------------------------------------------------------------------------
def policy_rate_hz(base: Path) -> float:
    from robot_rl.core.checkpoint import load_checkpoint

    return float(load_checkpoint(base).config["policy"]["spec"]["rate_hz"])


def rows_for(task: str, runs: list[Run], rate_hz: float) -> list[BenchRow]:
    ok = {}
    for r in runs:
        if r.status == "ok" and r.curve:
            ok.setdefault(r.method, []).append(r)
    rows: list[BenchRow] = []
    final = {m: float(np.mean([rs.curve[-1][1] for rs in v])) for m, v in ok.items()}
    reach = {(m, th): median_reached([steps_to(rs.curve, th) for rs in v]) for m, v in ok.items() for th in THRESHOLDS}
    for m in ok:
        if m == "bc" or "bc" not in final:
            rows.append(BenchRow(f"final_success_{m}_{task}", final[m], "fraction"))
        else:
            rows.append(BenchRow.compare(f"final_success_{m}_vs_bc_{task}", final[m], "fraction",
                                         f"final_success_bc_{task}", final["bc"], higher_is_better=True))
        for th in THRESHOLDS:
            s = reach[(m, th)]
            rows.append(BenchRow(f"env_steps_to_{int(th * 100)}_{m}_{task}", s, "env steps"))
            rows.append(BenchRow(f"robot_minutes_to_{int(th * 100)}_{m}_{task}", s / rate_hz / 60.0, "min"))
    offline = [r.offline_success for r in ok.get("offline_residual", []) if r.offline_success is not None]
    if offline and "bc" in final:      # the offline rounds alone against BC (mixed-quality data)
        rows.append(BenchRow.compare(f"offline_success_vs_bc_{task}", float(np.mean(offline)), "fraction",
                                     f"final_success_bc_{task}", final["bc"], higher_is_better=True))
    heldout = {m: [r.heldout_success for r in v if r.heldout_success is not None] for m, v in ok.items()}
    for m, values in heldout.items():     # the final policies on held-out seeds, against the BC base's
        if m != "bc" and values and heldout.get("bc"):
            rows.append(BenchRow.compare(f"heldout_success_{m}_vs_bc_{task}", float(np.mean(values)), "fraction",
                                         f"heldout_success_bc_{task}", heldout["bc"][0], higher_is_better=True))
    if "residual" in ok and "rlpd" in ok:
        for th in THRESHOLDS:
            pct = int(th * 100)
            rows.append(BenchRow.compare(f"env_steps_to_{pct}_residual_vs_rlpd_{task}", reach[("residual", th)],
                                         "env steps", f"env_steps_to_{pct}_rlpd_{task}", reach[("rlpd", th)],
                                         higher_is_better=False))
    return rows


def plot_curves(runs: dict[str, list[Run]], path: Path, budget: int, heldout_episodes: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(runs)
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.2), squeeze=False)
    grid = np.linspace(0, budget, 101)
    for ax, task in zip(axes[0], tasks):
        by_method: dict[str, list[Run]] = {}
        for r in runs[task]:
            if r.status == "ok" and r.curve:
                by_method.setdefault(r.method, []).append(r)
        for m, rs in by_method.items():
            heldout = [r.heldout_success for r in rs if r.heldout_success is not None]
            if m == "bc":
                ax.axhline(rs[0].curve[0][1], color="gray", ls="--", label="bc base")
                if heldout:
                    ax.plot([budget], heldout[:1], "*", ms=11, color="gray", label=f"held-out ({heldout_episodes} episodes)")
                continue
            ys = np.stack([np.interp(grid, [p[0] for p in r.curve], [p[1] for p in r.curve]) for r in rs])
            mean, std = ys.mean(0), ys.std(0)
            (line,) = ax.plot(grid, mean, label=f"{m} ({len(rs)} seeds)")
            ax.fill_between(grid, mean - std, mean + std, alpha=0.2)
            if heldout:                 # the final policies on held-out seeds, at the end of the budget
                ax.plot([budget], [float(np.mean(heldout))], "*", ms=11, color=line.get_color())
        for th in THRESHOLDS:
            ax.axhline(th, color="k", lw=0.5, ls=":")
        ax.set(title=task, xlabel="environment steps", ylabel="success rate", ylim=(-0.02, 1.02),
               xlim=(0, budget * 1.03))
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(cfg: Any = None) -> int:
    bench = FinetuneBench(cfg if cfg is not None else {})
    bench.out.mkdir(parents=True, exist_ok=True)
    runs = bench.run()
    rows: list[BenchRow] = []
    for task, task_runs in runs.items():
        rows += rows_for(task, task_runs, policy_rate_hz(bench.out / task / "bc" / "checkpoints" / "best"))
    raw = {task: [{"method": r.method, "seed": r.seed, "status": r.status, "reason": r.reason,
                   "curve": [list(p) for p in r.curve]}
                  | {k: getattr(r, k) for k in ("offline_success", "heldout_success") if getattr(r, k) is not None}
                  for r in rs] for task, rs in runs.items()}
    (bench.out / "finetune_curves.json").write_text(json.dumps({"options": bench.o, "runs": raw}, indent=1))
    plot = plot_curves(runs, bench.out / "finetune_curves.png", int(bench.o["env_steps"]),
                       int(bench.o["heldout_episodes"] or 0))
    table = format_bench_table(NAME, rows)
    missing = [f"{t}/{r.method}: {r.status} ({r.reason})" for t, rs in runs.items() for r in rs if r.status != "ok"]
    (bench.out / "finetune_table.txt").write_text(table + "\n" + "\n".join(missing) + "\n")
    print(table)
    for line in missing:
        print(line)
    print(f"curves: {plot}; runs in {bench.out}")
    get = cfg.get if hasattr(cfg, "get") else (lambda k, d=None: d)
    if get("json"):
        write_bench_json(get("json"), NAME, rows)
        print(f"wrote {get('json')}")
    return 0


if __name__ == "__main__":  # python -m robot_rl.bench.finetune [key=value ...]
    import sys

    raise SystemExit(main(dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)))
