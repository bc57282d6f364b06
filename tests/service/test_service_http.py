"""The service as a client meets it: a real `metaprior serve` process on a loopback port, real
HTTP, a real SQLite store; the Python client and raw requests."""

from __future__ import annotations

import math
import os
import re
import stat
import subprocess
import sys
import time

import httpx
import pandas as pd
import pytest
import torch

import metaprior as mp
from metaprior.errors import InputDataError
from metaprior.service import (
    AlreadyExistsError,
    Client,
    ConflictError,
    InvalidRequestError,
    JobFailedError,
    NotFoundError,
    UnauthorizedError,
)
from metaprior.service.launch import free_port
from tests.service.conftest import unique

SPACE = mp.SearchSpace([
    mp.Float("lr", 1e-4, 1e-1, log=True),
    mp.Int("layers", 1, 4),
    mp.Categorical("opt", ["adam", "sgd"]),
])
FAST = {"num_restarts": 2, "raw_samples": 32}


def objective(row: dict) -> float:
    """A cheap typed objective: best near lr=1e-2, 3 layers, adam."""
    return ((math.log10(row["lr"]) + 2) ** 2 + 0.1 * (row["layers"] - 3) ** 2
            + (0.0 if row["opt"] == "adam" else 0.5))


def run(study, n: int) -> None:
    for _ in range(n):
        trials = study.ask()
        study.tell(trials, [objective(r) for r in trials.drop(columns="trial").to_dict("records")])


# ---- security -------------------------------------------------------------------------------
def every_operation(base_url: str, token: str) -> list[tuple[str, str]]:
    schema = httpx.get(f"{base_url}/openapi.json",
                       headers={"Authorization": f"Bearer {token}"}).json()
    ops = []
    for path, methods in schema["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        ops.extend((method.upper(), concrete) for method in methods)
    return ops


def test_every_path_but_health_needs_the_token(sqlite_server):
    ops = every_operation(sqlite_server.url, sqlite_server.token)
    assert len(ops) >= 15
    ops.append(("GET", "/openapi.json"))  # the schema too; FastAPI's /docs and /redoc are off
    for off in ("/docs", "/redoc"):
        assert httpx.get(sqlite_server.url + off).status_code == 404
    for method, path in ops:
        bodyless = httpx.request(method, sqlite_server.url + path)
        wrong = httpx.request(method, sqlite_server.url + path,
                              headers={"Authorization": "Bearer not-the-token"})
        if path == "/v1/health":
            assert bodyless.status_code == wrong.status_code == 200
            continue
        for r in (bodyless, wrong):
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            assert "token" in r.json()["detail"]
    with pytest.raises(UnauthorizedError):
        Client(sqlite_server.url, token="wrong").families()


def test_without_a_token_serve_writes_one_readable_by_its_owner_only(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "METAPRIOR_TOKEN"}
    env.update(METAPRIOR_STORE=str(tmp_path / "home"), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "metaprior", "serve", "--port", str(port),
                             "--no-jobs"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env, text=True)
    try:
        line = proc.stdout.readline()
        path = tmp_path / "home" / "service.token"
        assert str(path) in line and "0600" in line, line
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        token = path.read_text().strip()
        assert token not in line
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/families",
                             headers={"Authorization": f"Bearer {token}"}).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("the server never answered with the token it wrote")
        assert (tmp_path / "home" / "service.db").exists()
    finally:
        proc.terminate()
        proc.wait(15)


def test_servers_creating_the_token_file_at_once_all_get_the_one_it_holds(tmp_path):
    """Two servers started together on one store: each must serve the token the file holds,
    not the one it wrote and another server's write replaced."""
    import threading

    from metaprior.service.serve import create_token_file

    path, start, tokens = tmp_path / "store" / "service.token", threading.Barrier(6), []

    def create() -> None:
        start.wait()
        tokens.append(create_token_file(path))

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(tokens) == 6 and set(tokens) == {path.read_text().strip()}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["service.token"]  # no temporary left


def test_a_token_file_open_to_others_is_refused(tmp_path):
    f = tmp_path / "token"
    f.write_text("secret")
    f.chmod(0o644)
    out = subprocess.run([sys.executable, "-m", "metaprior", "serve", "--store",
                          str(tmp_path / "s.db"), "--token-file", str(f)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "chmod 600" in out.stderr and "0644" in out.stderr


# ---- studies --------------------------------------------------------------------------------
def test_ask_tell_best_history_on_a_typed_space(client):
    fam = unique("typed")
    client.create_family(fam, SPACE)
    study = client.create_study(fam, name=unique("study one"), seed=0, options=FAST)
    assert study.prior_version is None
    trials = study.ask(n=2)
    assert list(trials.columns) == ["trial", "lr", "layers", "opt"]
    assert trials["trial"].is_unique
    assert set(trials["opt"]) <= {"adam", "sgd"} and trials["layers"].between(1, 4).all()
    study.tell(trials, [objective(r) for r in trials.drop(columns="trial").to_dict("records")])
    run(study, 4)
    hist = study.history
    assert len(hist) == 6 and list(hist.columns) == ["trial", "lr", "layers", "opt", "value", "state"]
    assert (hist["state"] == "complete").all() and hist["value"].notna().all()
    params, value = study.best
    assert value == hist["value"].min()
    assert objective(params) == pytest.approx(value)
    # the same study, found by name by another client, continues where this one stopped
    again = client.study(study.name)
    run(again, 1)
    assert len(study.history) == 7


def test_concurrent_asks_see_each_others_pending_points(client):
    fam = unique("pending")
    client.create_family(fam, SPACE)
    study = client.create_study(fam, name=unique("s"), seed=3, options=FAST)
    run(study, 4)
    first, second = study.ask(), study.ask()  # neither told
    assert first["trial"][0] != second["trial"][0]
    p1, p2 = first.drop(columns="trial").iloc[0], second.drop(columns="trial").iloc[0]
    assert not p1.equals(p2), "the second ask proposed the pending point again"
    hist = study.history
    assert (hist["state"] == "pending").sum() == 2 and hist["value"].isna().sum() == 2


def test_tell_twice_same_value_is_fine_a_different_value_is_409(client):
    fam = unique("conflict")
    client.create_family(fam, SPACE)
    study = client.create_study(fam, name=unique("s"), options=FAST)
    trials = study.ask()
    study.tell(trials, [1.0])
    study.tell(trials, [1.0])
    with pytest.raises(ConflictError, match="1.0") as e:
        study.tell(trials, [2.0])
    assert e.value.status == 409
    assert study.history["value"].tolist() == [1.0]


def test_add_outside_evaluations_and_refuse_bad_ones(client):
    fam = unique("add")
    client.create_family(fam, SPACE, direction="maximize")
    study = client.create_study(fam, name=unique("s"), options=FAST)
    df = pd.DataFrame({"lr": [0.01, 0.001], "layers": [2, 3], "opt": ["adam", "sgd"],
                       "note": ["ignored", "too"]})
    added = study.add(df, [0.5, 0.9])
    assert added["state"].tolist() == ["complete", "complete"]
    assert study.best == ({"lr": 0.001, "layers": 3, "opt": "sgd"}, 0.9)  # maximised
    with pytest.raises(InvalidRequestError, match="rmsprop"):
        study.add([{"lr": 0.01, "layers": 2, "opt": "rmsprop"}], [1.0])
    with pytest.raises(InvalidRequestError, match="layers"):
        study.add([{"lr": 0.01, "layers": 9, "opt": "adam"}], [1.0])
    with pytest.raises(InvalidRequestError, match="missing"):
        study.add([{"lr": 0.01, "opt": "adam"}], [1.0])
    with pytest.raises(InvalidRequestError, match="one value per row"):
        study.add([{"lr": 0.01, "layers": 2, "opt": "adam"}], [1.0, 2.0])
    with pytest.raises(InputDataError, match="NaN or inf at position 0"):
        study.add([{"lr": 0.01, "layers": 2, "opt": "adam"}], [float("nan")])
    # the server refuses it too (JSON itself has no NaN, Python's parser accepts one)
    r = httpx.post(f"{study._client.url}/v1/studies/{study.name}/add",
                   content='{"params": [{"lr": 0.01, "layers": 2, "opt": "adam"}], "values": [NaN]}',
                   headers={"Authorization": study._client._http.headers["Authorization"],
                            "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-2:] == ["values", 0]
    assert len(study.history) == 2
    run(study, 1)  # the added points train the model of the next ask
    assert len(study.history) == 3


def test_abandoned_and_timed_out_trials_are_not_waited_for(client):
    fam = unique("abandon")
    client.create_family(fam, SPACE)
    study = client.create_study(fam, name=unique("s"), options=FAST)
    t = study.ask()
    assert study.abandon(int(t["trial"][0]))["state"] == "abandoned"
    told = study.ask()
    study.tell(told, [1.0])
    with pytest.raises(ConflictError, match="complete"):
        study.abandon(int(told["trial"][0]))
    study.tell(t, [2.0])  # a late value of an abandoned trial is still kept
    assert study.history["state"].tolist() == ["complete", "complete"]
    timed = client.create_study(fam, name=unique("t"), options=FAST, pending_timeout=1e-3)
    timed.ask()
    time.sleep(0.05)
    timed.ask()  # the first one is older than the timeout: abandoned, not pending
    assert timed.history["state"].tolist() == ["abandoned", "pending"]


def test_http_errors_are_typed_and_carry_a_detail(client, sqlite_server):
    fam = unique("errors")
    client.create_family(fam, SPACE)
    with pytest.raises(AlreadyExistsError, match="exists already"):
        client.create_family(fam, SPACE)
    with pytest.raises(NotFoundError, match="no study"):
        client.study("no such study")
    with pytest.raises(NotFoundError, match="no family"):
        client.create_study("no such family", name=unique("s"))
    with pytest.raises(InvalidRequestError, match="space"):
        client.request("POST", "/v1/families", json={"name": unique("f"), "space": {"x": 1}})
    with pytest.raises(InvalidRequestError, match="value"):
        client.request("POST", "/v1/families", json={"name": unique("f"),
                                                    "space": SPACE.to_dict() | {
                                                        "parameters": [{"type": "float", "name": "value",
                                                                        "lower": 0, "upper": 1}]}})
    r = httpx.post(f"{sqlite_server.url}/v1/studies", json={"family": fam, "name": "x", "seed": -1},
                   headers={"Authorization": f"Bearer {sqlite_server.token}"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "seed"
    study = client.create_study(fam, name=unique("s"), options=FAST)
    with pytest.raises(NotFoundError, match="no trial 999999"):
        study.tell([999999], [1.0])
    with pytest.raises(InvalidRequestError):
        client.request("POST", f"/v1/studies/{study.name}/ask", json={"n": 0})


def test_requests_beyond_what_the_service_can_run_are_422_not_500(client):
    """JSON numbers have no size limit: each of these once reached the server as a 500, a
    study whose every ask failed, or a training job that would never end."""
    def family(params):
        return {"name": unique("f"), "space": {"version": 1, "parameters": params}}

    with pytest.raises(InvalidRequestError, match=r"space.parameters\[0\].upper .* too large"):
        client.request("POST", "/v1/families", json=family(
            [{"type": "float", "name": "a", "lower": 0, "upper": 10**400}]))
    with pytest.raises(InvalidRequestError, match="wider than a float"):
        client.request("POST", "/v1/families", json=family(
            [{"type": "float", "name": "a", "lower": -1e308, "upper": 1e308}]))
    with pytest.raises(InvalidRequestError, match="2\\*\\*53"):
        client.request("POST", "/v1/families", json=family(
            [{"type": "int", "name": "a", "lower": 0, "upper": 2**80}]))
    fam = unique("limits")
    client.create_family(fam, SPACE)
    study = client.create_study(fam, name=unique("s"), options=FAST)
    with pytest.raises(InvalidRequestError, match=r"params\[0\].lr .* too large"):
        client.request("POST", f"/v1/studies/{study.name}/add", json={
            "params": [{"lr": 10**400, "layers": 2, "opt": "adam"}], "values": [1.0]})
    with pytest.raises(InvalidRequestError, match="outer_steps"):
        client.request("POST", f"/v1/families/{fam}/priors/train",
                       json={"config": {"outer_steps": 10**7}})
    with pytest.raises(InvalidRequestError, match=r"config.outer_lr .* too large"):
        client.request("POST", f"/v1/families/{fam}/priors/train",
                       json={"config": {"outer_lr": 10**400}})
    with pytest.raises(InvalidRequestError, match="hidden"):
        client.request("POST", f"/v1/families/{fam}/priors/train",
                       json={"config": {"hidden": [10**6]}})
    with pytest.raises(NotFoundError, match="no trial 999999"):
        study.abandon(999999)
    with pytest.raises(NotFoundError, match="no job"):
        client.job(2**31 - 1)
    assert study.history.empty  # nothing refused was stored


# ---- priors and training --------------------------------------------------------------------
def test_upload_prior_checks_the_file_and_the_space(client, tmp_path):
    fam = unique("upload")
    client.create_family(fam, mp.SearchSpace([mp.Float("x", 0.0, 1.0)]))
    with pytest.raises(InvalidRequestError, match="not a valid prior"):
        client.request("POST", f"/v1/families/{fam}/priors", json={"data": "aGVsbG8="})
    with pytest.raises(InvalidRequestError, match="base64"):
        client.request("POST", f"/v1/families/{fam}/priors", json={"data": "%%%"})
    other = mp.meta_train(mp.tasks.Logistic(), mp.ReptileConfig(outer_steps=2, tasks_per_step=2,
                                                                points_per_task=8, hidden=(8,)),
                          progress=False)
    with pytest.raises(InvalidRequestError, match="x0|x"):
        client.upload_prior(fam, other)  # the prior's space is x0 in [-5, 5]: not this family's


def finish_branin_studies(client, fam: str, n_studies: int) -> None:
    """`n_studies` finished studies of 4 trials each, on held-out Branin tasks."""
    for k, task in enumerate(mp.tasks.Branin().held_out_tasks(n_studies, seed=0)):
        study = client.create_study(fam, name=unique(f"b{k}"), seed=k, options=FAST)
        for _ in range(4):
            trials = study.ask()
            X = torch.tensor(trials[["x1", "x2"]].to_numpy(), dtype=torch.float64)
            study.tell(trials, task(X).tolist())
        study.finish()


BRANIN_SPACE = mp.SearchSpace([mp.Float("x1", -5.0, 10.0), mp.Float("x2", 0.0, 15.0)])


def test_train_a_prior_from_finished_studies(client):
    fam = unique("branin")
    client.create_family(fam, BRANIN_SPACE)
    with pytest.raises(JobFailedError, match="0 finished studies"):
        client.train_prior(fam).wait(timeout=60)
    finish_branin_studies(client, fam, 3)
    cfg = mp.ReptileConfig(outer_steps=40, points_per_task=8, inner_steps=4, hidden=(16, 16))
    job = client.train_prior(fam, config=cfg, seed=0).wait(timeout=120)
    assert job.state == "done" and job.progress == 1.0
    assert "shrunk from tasks_per_step=32 to 3" in job.message
    assert client.family(fam)["current_prior"] == job.prior_version == 1
    prior = client.prior(fam)
    assert prior.space.names == ["x1", "x2"] and prior.stats["service"]["studies"] == 3
    new = client.create_study(fam, name=unique("new"), options=FAST)
    assert new.prior_version == 1
    first = new.ask()
    assert len(first) == 1  # the prior's zero-shot point
    assert new.history["state"].tolist() == ["pending"]
    with pytest.raises(InvalidRequestError, match="outer_steps"):
        client.request("POST", f"/v1/families/{fam}/priors/train",
                       json={"config": {"outer_steps": 0}})
    assert job.info["cross_validate_steps"] is False and "cross_validation" not in prior.stats


def test_a_job_chooses_its_outer_steps_by_cross_validation(client):
    fam = unique("branin-cv")
    client.create_family(fam, BRANIN_SPACE)
    finish_branin_studies(client, fam, 3)
    cfg = mp.ReptileConfig(outer_steps=40, points_per_task=4, inner_steps=2, hidden=(8,))
    job = client.train_prior(fam, config=cfg, seed=0, cross_validate_steps=True).wait(timeout=120)
    assert job.state == "done" and job.info["cross_validate_steps"] is True
    validation = client.prior(fam).stats["cross_validation"]
    chosen = validation["outer_steps"]
    assert validation["folds"] == 3 and 1 <= chosen <= 40
    assert f"chose {chosen} of 40 outer steps" in job.message
    assert client.prior(fam).stats["outer_steps_done"] == chosen


def test_a_store_with_no_free_connection_is_503_not_500(tmp_path, monkeypatch):
    """More waiting requests than the engine has connections: a retryable 503. (In process: a
    real server would need dozens of concurrent asks to exhaust its pool.)"""
    from fastapi.testclient import TestClient
    from sqlalchemy.exc import TimeoutError as PoolTimeoutError

    from metaprior.service.app import create_app

    app = create_app(f"sqlite:///{tmp_path / 'store.db'}", "token")

    def no_connection(*_args, **_kwargs):
        raise PoolTimeoutError("QueuePool limit of size 5 overflow 10 reached")

    monkeypatch.setattr(app.state.store, "list_families", no_connection)
    with TestClient(app) as http:
        r = http.get("/v1/families", headers={"Authorization": "Bearer token"})
    assert r.status_code == 503 and "retry" in r.json()["detail"]
    app.state.store.close()
