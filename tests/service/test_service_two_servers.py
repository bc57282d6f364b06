"""Two server processes on one store serve one study: concurrent asks through either server see
each other's pending points (the study lock is in the database), and every told value is kept."""

from __future__ import annotations

import threading

import metaprior as mp
from metaprior.service import Client
from metaprior.service.launch import ServerProcess

SPACE = mp.SearchSpace([mp.Float("a", -1.0, 1.0), mp.Float("b", -1.0, 1.0)])


def f(row) -> float:
    return (row["a"] - 0.3) ** 2 + (row["b"] + 0.2) ** 2


def test_two_servers_one_study(store_url, tmp_path):
    servers = [ServerProcess(store_url, token="shared-token", workdir=tmp_path, jobs=False)
               for _ in range(2)]
    try:
        for s in servers:
            s.start()
        clients = [Client(s.url, token="shared-token") for s in servers]
        clients[0].create_family("fam", SPACE)
        clients[0].create_study("fam", name="shared", seed=0,
                                options={"num_restarts": 2, "raw_samples": 32, "n_init": 3})
        told: dict[int, float] = {}
        errors: list[BaseException] = []
        lock = threading.Lock()

        def worker(k: int) -> None:
            try:
                study = clients[k % 2].study("shared")  # threads alternate between servers
                for _ in range(3):
                    trials = study.ask()
                    values = [f(r) for r in trials.to_dict("records")]
                    study.tell(trials, values)
                    with lock:
                        told.update(zip(trials["trial"].tolist(), values, strict=True))
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        hist = clients[1].study("shared").history
        assert len(hist) == 12 and hist["trial"].is_unique
        assert (hist["state"] == "complete").all()
        assert dict(zip(hist["trial"], hist["value"], strict=True)) == told
        points = set(zip(hist["a"].round(9), hist["b"].round(9), strict=True))
        assert len(points) == 12, "two concurrent asks proposed the same point"
    finally:
        for s in servers:
            s.stop()


def test_a_told_value_survives_a_kill_9_right_after_its_response(tmp_path):
    """The value is committed before the response: SIGKILL the server the moment a tell
    returns, restart it, and every told value is there."""
    server = ServerProcess(f"sqlite:///{tmp_path / 'store.db'}", workdir=tmp_path, jobs=False)
    server.start()
    try:
        client = Client(server.url, token=server.token)
        client.create_family("fam", SPACE)
        study = client.create_study("fam", name="s", options={"n_init": 10})
        told = {}
        for _ in range(3):
            trials = study.ask()
            values = [f(r) for r in trials.to_dict("records")]
            study.tell(trials, values)
            told.update(zip(trials["trial"].tolist(), values, strict=True))
        server.kill()
        server.start()
        hist = Client(server.url, token=server.token).study("s").history
        assert dict(zip(hist["trial"], hist["value"], strict=True)) == told
    finally:
        server.stop()
