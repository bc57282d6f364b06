"""Load on the prior service: concurrent clients against several server processes on one store.

Starts `--servers` `metaprior serve` processes on one store (a temporary SQLite file, or
`--store postgresql://...`), then:

1. **Overhead, one client alone.** For `--overhead-tasks` Branin tasks, the same study (same seed,
   same settings) runs in process (`Optimizer.ask`/`tell`) and through the service; the ratio of
   seconds per ask at each number of observations n is the service's per-ask overhead (HTTP,
   JSON, the store, and rebuilding the Optimizer from the store at every ask).
2. **Load.** `--clients` threads each run `--studies` studies of `--evals` evaluations (their own
   Branin tasks), asking and telling in turn across their studies, alternating between servers.
   Seconds per ask and per tell (p50, p99), asks per second overall.
3. **Checks.** Every study ends with exactly `--evals` complete trials; no trial is lost (each
   told value is in the store, equal), duplicated (trial ids unique across the store) or foreign
   (a study holds only trials its client asked or was told to have).

With `--crash K` a killer thread SIGKILLs a random server (with its process group) at K random
moments during the load and restarts it. Clients fail over to the other server; an ask whose
answer was lost leaves an orphan pending trial, which the client abandons (it owns the study, so a
pending trial it does not know is its own lost ask); a tell whose answer was lost is repeated (the
same value twice is fine). Every told value must survive and every study must finish.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.service_load --store postgresql://u:p@127.0.0.1/db
    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.service_load --crash 10 --store postgresql://...
    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.service_load --quick     # about a minute

It prints a table and writes a CSV of every request (`--out`).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pandas as pd  # noqa: E402
import torch  # noqa: E402

import metaprior as mp  # noqa: E402
from benchmarks.machine import cpu_description  # noqa: E402
from metaprior.service import Client, ServiceError, ServiceUnavailableError, Study  # noqa: E402
from metaprior.service.errors import ServerError  # noqa: E402
from metaprior.service.launch import ServerProcess  # noqa: E402

SPACE = mp.SearchSpace([mp.Float("x1", -5.0, 10.0), mp.Float("x2", 0.0, 15.0)])
RETRYABLE = (ServiceUnavailableError, ServerError)


def evaluate(task, trials: pd.DataFrame) -> list[float]:
    X = torch.tensor(trials[["x1", "x2"]].to_numpy(), dtype=torch.float64)
    return task(X).tolist()


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ---- 1. overhead of one client alone ----------------------------------------------------
def overhead(client: Client, family: str, tasks, evals: int, options: dict) -> pd.DataFrame:
    """Seconds per ask of one task at a time: an in-process `Optimizer`, then a service study."""
    rows = []
    for k, task in enumerate(tasks):
        opt = mp.Optimizer(SPACE, seed=k, **options)
        study = client.create_study(family, name=f"overhead-{k}-{time.time_ns()}", seed=k,
                                    options=options)
        for where, asker in (("in-process", opt), ("service", study)):
            for n in range(evals):
                t0 = time.perf_counter()
                trials = asker.ask()
                rows.append({"where": where, "task": k, "n": n,
                             "seconds": time.perf_counter() - t0})
                asker.tell(trials, evaluate(task, trials))
    return pd.DataFrame(rows)


# ---- 2. load --------------------------------------------------------------------------------
class LoadClient(threading.Thread):
    """One client: its studies, asked and told in turn, failing over between servers."""

    def __init__(self, k: int, servers: list[ServerProcess], family: str, tasks, evals: int,
                 options: dict, log: list, lock: threading.Lock):
        super().__init__(daemon=True)
        self.k, self.servers, self.family, self.tasks = k, servers, family, tasks
        self.evals, self.options, self.log, self.lock = evals, options, log, lock
        self.clients = [Client(s.url, token=s.token, timeout=300) for s in servers]
        self.told: dict[str, dict[int, float]] = {}
        self.asked: dict[str, set[int]] = {}
        self.handles: dict[tuple[int, str], Study] = {}
        self.error: BaseException | None = None
        self.retries = self.orphans = 0
        self.turn = k

    def handle(self, i: int, name: str) -> Study:
        """Study `name` on server `i`, without a request (the space is known)."""
        key = (i, name)
        if key not in self.handles:
            study = Study(self.clients[i], {"name": name, "family": self.family,
                                            "prior_version": None})
            study._space = SPACE
            self.handles[key] = study
        return self.handles[key]

    def call(self, fn, what: str):
        """`fn(server index)` on the next server, failing over until one answers."""
        for _ in range(200):
            i = self.turn % len(self.clients)
            self.turn += 1
            t0 = time.perf_counter()
            try:
                out = fn(i)
            except RETRYABLE:
                self.retries += 1
                time.sleep(0.2)
                if what == "ask":
                    self.abandon_orphans()
                continue
            with self.lock:
                self.log.append({"client": self.k, "kind": what, "seconds":
                                 time.perf_counter() - t0, "server": self.clients[i].url})
            return out
        raise RuntimeError(f"client {self.k}: no server answered a {what} in 200 tries")

    def abandon_orphans(self) -> None:
        """Abandon the pending trials of our studies that we never saw: asks whose answer was
        lost (we own these studies, so no one else asks in them)."""
        i = self.turn % len(self.clients)
        for name, asked in self.asked.items():
            try:
                hist = self.handle(i, name).history
                for t in hist.loc[hist["state"] == "pending", "trial"].astype(int):
                    if t not in asked:
                        self.handle(i, name).abandon(t)
                        self.orphans += 1
            except RETRYABLE:
                return

    def run(self) -> None:
        try:
            names = [f"{self.family}-c{self.k}-s{j}" for j in range(len(self.tasks))]
            for j, name in enumerate(names):
                try:
                    self.call(lambda i, n=name, j=j: self.clients[i].create_study(
                        self.family, name=n, seed=1000 * self.k + j, options=self.options), "create")
                except ServiceError as e:  # a lost answer to a create that was committed
                    if e.status != 409:
                        raise
                self.told[name], self.asked[name] = {}, set()
            for _ in range(self.evals):
                for name, task in zip(names, self.tasks, strict=True):
                    trials = self.call(lambda i, n=name: self.handle(i, n).ask(), "ask")
                    self.asked[name].update(int(t) for t in trials["trial"])
                    values = evaluate(task, trials)
                    self.call(lambda i, n=name, t=trials, v=values: self.handle(i, n).tell(t, v),
                              "tell")
                    self.told[name].update(zip(trials["trial"].astype(int), values, strict=True))
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            self.error = e


class Killer(threading.Thread):
    """SIGKILL a random server at `kills` random moments, restarting it each time."""

    def __init__(self, servers: list[ServerProcess], kills: int, gap: tuple[float, float],
                 seed: int):
        super().__init__(daemon=True)
        self.servers, self.kills, self.gap = servers, kills, gap
        self.rng = random.Random(seed)
        self.done, self.stop = 0, threading.Event()

    def run(self) -> None:
        while self.done < self.kills and not self.stop.wait(self.rng.uniform(*self.gap)):
            server = self.rng.choice(self.servers)
            server.kill()
            self.done += 1
            server.start()


def check(client: Client, loaders: list[LoadClient], evals: int) -> dict:
    """Lost, duplicated and foreign trials, and studies left unfinished.

    lost: a told value missing or different in the store, or an asked trial missing from its
    study; duplicated: a trial id twice in the store; foreign: a trial asked for one study found
    in another; unfinished: a study without exactly `evals` complete trials."""
    lost = duplicated = foreign = unfinished = 0
    owner = {t: name for lc in loaders for name, ids in lc.asked.items() for t in ids}
    seen: set[int] = set()
    for lc in loaders:
        for name, told in lc.told.items():
            hist = client.study(name).history
            complete = hist[hist["state"] == "complete"]
            unfinished += len(complete) != evals
            stored = dict(zip(complete["trial"].astype(int), complete["value"], strict=True))
            lost += sum(stored.get(t) != v for t, v in told.items())
            ids = hist["trial"].astype(int).tolist()
            lost += len(lc.asked[name] - set(ids))
            duplicated += len(ids) - len(set(ids)) + len(set(ids) & seen)
            seen |= set(ids)
            foreign += sum(owner.get(t, name) != name for t in ids)
    return {"lost": lost, "duplicated": duplicated, "foreign": foreign, "unfinished": unfinished}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", help="store URL (default: a temporary SQLite file)")
    p.add_argument("--servers", type=int, default=2)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--studies", type=int, default=4, help="studies per client")
    p.add_argument("--evals", type=int, default=20, help="evaluations per study")
    p.add_argument("--overhead-tasks", type=int, default=2)
    p.add_argument("--crash", type=int, default=0, metavar="K", help="kill -9 a server K times")
    p.add_argument("--crash-gap", type=float, nargs=2, default=(3.0, 12.0), metavar=("LO", "HI"),
                   help="seconds between kills, drawn uniformly (default 3 12)")
    p.add_argument("--num-restarts", type=int, default=8)
    p.add_argument("--raw-samples", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="2 clients x 2 studies x 8 evaluations")
    p.add_argument("--out", default="benchmarks/results/service_load.csv")
    args = p.parse_args(argv)
    if args.quick:
        args.clients, args.studies, args.evals, args.overhead_tasks = 2, 2, 8, 1
    torch.set_num_threads(1)
    options = {"num_restarts": args.num_restarts, "raw_samples": args.raw_samples}
    work = Path(tempfile.mkdtemp(prefix="metaprior-load-"))
    store = args.store or f"sqlite:///{work / 'store.db'}"
    servers = [ServerProcess(store, token="load-token", workdir=work, jobs=False)
               for _ in range(args.servers)]
    for s in servers:
        s.start()
    try:
        admin = Client(servers[0].url, token="load-token", timeout=300)
        family = f"branin-load-{time.time_ns()}"
        admin.create_family(family, SPACE)
        branin = mp.tasks.Branin()
        tasks = branin.held_out_tasks(args.clients * args.studies + args.overhead_tasks,
                                      seed=args.seed)
        ov = overhead(admin, family, tasks[:args.overhead_tasks], args.evals, options)
        log: list[dict] = []
        lock = threading.Lock()
        loaders = [LoadClient(k, servers, family,
                              tasks[args.overhead_tasks + k * args.studies:
                                    args.overhead_tasks + (k + 1) * args.studies],
                              args.evals, options, log, lock) for k in range(args.clients)]
        killer = Killer(servers, args.crash, tuple(args.crash_gap), args.seed) if args.crash else None
        t0 = time.perf_counter()
        for lc in loaders:
            lc.start()
        if killer is not None:
            killer.start()
        for lc in loaders:
            lc.join()
        wall = time.perf_counter() - t0
        if killer is not None:
            killer.stop.set()
            killer.join()
        errors = [lc.error for lc in loaders if lc.error is not None]
        if errors:
            raise RuntimeError(f"{len(errors)} clients failed: {errors[:3]}")
        for s in servers:  # a server the killer left dead still answers for the checks
            if s.proc is None or s.proc.poll() is not None:
                s.start()
        result = check(admin, loaders, args.evals)
    finally:
        for s in servers:
            s.stop()
    df = pd.DataFrame(log)
    asks = df.loc[df["kind"] == "ask", "seconds"].tolist()
    tells = df.loc[df["kind"] == "tell", "seconds"].tolist()
    med = ov.groupby(["where", "n"])["seconds"].median().unstack(0)
    ratio = (med["service"] / med["in-process"])
    model_ns = ratio.index >= 3  # from n = 3 the optimizer fits a GP at every ask
    print(f"service load: {args.clients} clients x {args.studies} studies x {args.evals} "
          f"evaluations, {args.servers} servers, store {store.split('://')[0]}, "
          f"num_restarts={args.num_restarts} raw_samples={args.raw_samples}, crash kills "
          f"{killer.done if killer else 0}; commit {commit()}; {cpu_description()}")
    print(f"  ask  p50 {pct(asks, 50):.3f} s  p99 {pct(asks, 99):.3f} s  ({len(asks)} asks)")
    print(f"  tell p50 {pct(tells, 50):.3f} s  p99 {pct(tells, 99):.3f} s  ({len(tells)} tells)")
    print(f"  throughput {len(asks) / wall:.2f} asks/s over {wall:.1f} s; client retries "
          f"{sum(lc.retries for lc in loaders)}, orphan asks abandoned "
          f"{sum(lc.orphans for lc in loaders)}")
    print(f"  one client alone, seconds per ask: in-process median "
          f"{statistics.median(med['in-process']):.3f}, service {statistics.median(med['service']):.3f};"
          f" ratio service/in-process at the same n: median {statistics.median(ratio):.2f} "
          f"(n >= 3, GP asks: {statistics.median(ratio[model_ns]):.2f}; Sobol asks n < 3: "
          f"{statistics.median(ratio[~model_ns]):.2f}); added seconds per ask: median "
          f"{statistics.median(med['service'] - med['in-process']):.3f}")
    print(f"  checks: {result}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ov_rows = ov.assign(kind="ask-alone", client=-1, server="")
    df.assign(where="load", commit=commit()).to_csv(out, index=False)
    ov_rows.assign(commit=commit()).to_csv(out.with_name(out.stem + "_overhead.csv"), index=False)
    print(f"  wrote {out} and {out.with_name(out.stem + '_overhead.csv')}")
    return 0 if not any(result.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
