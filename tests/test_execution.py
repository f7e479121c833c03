"""How fits run is one object, set around them: checked once, read once, the same for every entry point."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

import backprop_core as bc
from backprop_core import cli, training
from backprop_core.execution import Execution, execution_context, get_execution
from conftest import lecture

TANH = bc.get_activation("tanh")


# -- the object: every setting checked when it is made -------------------------------------------
@pytest.mark.parametrize("settings, message", [
    ({"chunk_size": 0}, "chunk_size must be a positive integer, 'auto' or None, got 0"),
    ({"chunk_size": 2.5}, "chunk_size must be a positive integer"),
    ({"chunk_size": "big"}, "chunk_size must be a positive integer"),
    ({"chunk_size": True}, "chunk_size must be a positive integer"),
    ({"workers": 0}, "workers must be a positive integer or None, got 0"),
    ({"workers": "all"}, "workers must be a positive integer"),
    ({"parallel": "fork"}, "parallel must be 'auto', 'threads' or 'processes', got 'fork'"),
    ({"stream": "sometimes"}, "stream must be True, False or 'auto'"),
    ({"stream": 1}, "stream must be True, False or 'auto'"),
    ({"fused": None}, "fused must be True, False or 'auto'"),
    ({"iteration_timeout": 0}, "iteration_timeout must be a positive number of seconds"),
    ({"iteration_timeout": float("inf")}, "iteration_timeout must be a positive number of seconds"),
    ({"iteration_timeout": "60"}, "iteration_timeout must be a positive number of seconds"),
])
def test_a_bad_setting_is_refused_when_made_naming_it(settings, message):
    with pytest.raises(bc.InvalidInputError, match=message):
        Execution(**settings)
    with pytest.raises(bc.InvalidInputError, match=message), execution_context(**settings):
        pass  # a block refuses it before it starts


def test_numpy_numbers_are_taken_as_python_numbers():
    e = Execution(chunk_size=np.int64(128), workers=np.int32(2), stream=np.bool_(False), iteration_timeout=np.int64(5))
    assert (e.chunk_size, e.workers, e.stream, e.iteration_timeout) == (128, 2, False, 5.0)
    assert type(e.chunk_size) is int and type(e.workers) is int and type(e.iteration_timeout) is float


def test_an_unknown_setting_is_named():
    with pytest.raises(bc.InvalidInputError, match="chunks: not a setting of the execution"):
        Execution().replace(chunks=10)
    with pytest.raises(bc.InvalidInputError, match="chunks: not a setting"), execution_context(chunks=10):
        pass


def test_the_defaults_leave_every_choice_to_the_planner():
    assert get_execution() == Execution() == Execution(chunk_size="auto", workers=None, parallel="auto",
                                                        stream="auto", fused="auto", iteration_timeout=None)


# -- the context: nests, comes back, stays on its thread -----------------------------------------
def test_blocks_nest_and_the_outer_settings_come_back():
    with execution_context(chunk_size=100) as outer:
        assert get_execution() is outer and outer.chunk_size == 100
        with execution_context(workers=2) as inner:
            assert (inner.chunk_size, inner.workers) == (100, 2)  # built on the outer block's
            assert get_execution() is inner
        assert get_execution() is outer
    assert get_execution() == Execution()


def test_the_settings_come_back_when_the_block_raises():
    with pytest.raises(RuntimeError), execution_context(workers=3):
        raise RuntimeError("inside")
    assert get_execution() == Execution()


def test_a_block_may_start_from_an_execution_object():
    chosen = Execution(chunk_size=64, parallel="threads")
    with execution_context(chosen, workers=2) as e:
        assert e == Execution(chunk_size=64, parallel="threads", workers=2)
    with pytest.raises(bc.InvalidInputError, match="takes an Execution"), execution_context({"workers": 2}):
        pass


def test_a_new_thread_sees_the_defaults_and_each_thread_its_own_block():
    barrier = threading.Barrier(2, timeout=30)
    seen = {}

    def fit_like(name, workers):
        with execution_context(workers=workers):
            barrier.wait()  # both blocks are open at once
            seen[name] = get_execution().workers
            barrier.wait()

    def fresh():
        seen["fresh"] = get_execution()

    with execution_context(chunk_size=100):
        threads = [threading.Thread(target=fit_like, args=(n, w)) for n, w in (("a", 1), ("b", 2))]
        threads.append(threading.Thread(target=fresh))
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert get_execution().chunk_size == 100 and get_execution().workers is None  # this thread's own
    assert seen == {"a": 1, "b": 2, "fresh": Execution()}


def test_scikit_learns_n_jobs_workers_fit_with_the_defaults_as_the_guide_says(moons):
    from joblib import parallel_backend
    from sklearn.model_selection import cross_validate

    X, k = moons
    for n_jobs, expected in ((1, 100), (2, "auto")):
        with parallel_backend("threading"), execution_context(chunk_size=100):
            fitted = cross_validate(bc.BackpropClassifier(max_iter=5), X, k, cv=2, n_jobs=n_jobs,
                                    return_estimator=True)["estimator"]
        assert [model.execution_.chunk_size for model in fitted] == [expected, expected], n_jobs


def test_an_asyncio_task_sees_the_block_it_was_created_in():
    async def read():
        return get_execution()

    async def main():
        with execution_context(workers=2):
            task = asyncio.ensure_future(read())
        return await task

    assert asyncio.run(main()).workers == 2


# -- every entry point runs under the current execution, read once as the fit starts ------------
@pytest.fixture
def planned(monkeypatch):
    """The executions the planner was given, and how often a fit read the current one."""
    record = {"plans": [], "reads": 0}
    plan, read = training.planner.plan, training.get_execution

    def spy_plan(backend, shape, dtype, activation, execution=None, **options):
        record["plans"].append(execution)
        return plan(backend, shape, dtype, activation, execution, **options)

    def spy_read():
        record["reads"] += 1
        return read()

    monkeypatch.setattr(training.planner, "plan", spy_plan)
    monkeypatch.setattr(training, "get_execution", spy_read)
    return record


def test_the_estimator_runs_under_the_block_and_records_it(flower_data, planned):
    X, Y = flower_data
    with execution_context(chunk_size=100, workers=2) as chosen:
        model = lecture(max_iter=5).fit(X.T, Y[0])  # full batch: what chunks cut
    assert planned["plans"] == [chosen] and planned["reads"] == 1
    assert model.execution_ is chosen
    assert (model.plan_.mode, model.plan_.chunk_size, model.plan_.workers) == ("chunks", 100, 2)
    again = lecture(max_iter=5).fit(X.T, Y[0])  # outside: the defaults
    assert again.execution_ == Execution() and again.plan_.chunk_size != 100


def test_nn_model_runs_under_the_block(flower_data, planned):
    X, Y = flower_data
    with execution_context(chunk_size=100, workers=2) as chosen:
        bc.nn_model(X, Y, 4, 5)
    assert planned["plans"] == [chosen] and planned["reads"] == 1


def test_train_plans_under_the_block(flower_data, planned):
    X, Y = flower_data
    with execution_context(chunk_size=100) as chosen:
        result = bc.train(X, Y.astype(np.float64), bc.initialize_parameters(2, 4, 1), activation=TANH,
                          learning_rate=1.2, num_iterations=5, backend=bc.get_backend("numpy"))
    assert planned["plans"] == [chosen] and result.n_iter == 5


def test_the_command_line_builds_one_execution_from_its_options(planned, capsys):
    status = cli.main(["train", "--iterations", "5", "--chunk-size", "100", "--workers", "2",
                       "--parallel", "threads", "--quiet"])
    assert status == 0
    assert planned["plans"] == [Execution(chunk_size=100, workers=2, parallel="threads")]
    status = cli.main(["train", "--iterations", "5", "--quiet"])
    assert status == 0 and planned["plans"][-1] == Execution()


def test_a_bad_setting_from_the_command_line_is_one_line(capsys):
    assert cli.main(["train", "--iterations", "5", "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err


# -- the estimator's parameters are the model's ---------------------------------------------------
@pytest.mark.parametrize("name, value", [("chunk_size", 1024), ("workers", 2), ("parallel", "threads"),
                                         ("stream", True), ("fused", False), ("iteration_timeout", 60.0)])
def test_an_execution_setting_given_to_the_estimator_says_where_it_went(name, value):
    with pytest.raises(TypeError, match=rf"{name}: not a parameter of BackpropClassifier.*"
                                        rf"execution_context\({name}={value!r}\)"):
        bc.BackpropClassifier(max_iter=5, **{name: value})
    with pytest.raises(ValueError, match=rf"{name}: not a parameter of BackpropClassifier.*execution_context"):
        bc.BackpropClassifier().set_params(**{name: value})
    assert name not in bc.BackpropClassifier().get_params()


@pytest.mark.parametrize("entry", ["nn_model", "train", "fit"])
def test_an_execution_setting_given_to_a_function_says_where_it_went(entry, flower_data):
    X, Y = flower_data
    call = {"nn_model": lambda **kw: bc.nn_model(X, Y, 4, 2, **kw),
            "train": lambda **kw: training.train(X, Y, {}, activation=TANH, learning_rate=1.2,
                                                 num_iterations=2, backend=bc.get_backend("numpy"), **kw),
            "fit": lambda **kw: training.fit(X, Y, hidden_units=4, activation=TANH, learning_rate=1.2,
                                             num_iterations=2, **kw)}[entry]
    with pytest.raises(TypeError, match=rf"chunk_size: not a keyword of {entry}: .*"
                                        rf"execution_context\(chunk_size=1024\): {entry}\(\.\.\.\)"):
        call(chunk_size=1024)
    with pytest.raises(TypeError, match="unexpected keyword argument 'chunks'"):  # any other stays Python's
        call(chunks=1024)


def test_a_model_file_written_with_execution_settings_loads_without_them(flower_data, tmp_path):
    from backprop_core.persistence import load_parameters, save_parameters

    X, Y = flower_data
    bc.BackpropClassifier(max_iter=5).fit(X.T, Y[0]).save(tmp_path / "new.npz")
    host, meta = load_parameters(tmp_path / "new.npz")
    meta["params"] |= {"chunk_size": 1024, "workers": 2, "parallel": "auto", "stream": "auto", "fused": "auto",
                       "iteration_timeout": 300.0}  # as files written before the settings moved hold them
    save_parameters(tmp_path / "old.npz", host, meta)
    loaded = bc.BackpropClassifier.load(tmp_path / "old.npz")
    assert loaded.get_params() == bc.BackpropClassifier.load(tmp_path / "new.npz").get_params()
    np.testing.assert_array_equal(loaded.predict(X.T), bc.BackpropClassifier.load(tmp_path / "new.npz").predict(X.T))


# -- X is checked once, at the boundary -------------------------------------------------------------
def test_one_estimator_fit_checks_that_X_is_finite_once(flower_data, monkeypatch):
    import sklearn.utils.validation as sk_validation

    from backprop_core import estimator

    checks = []

    def counting(module, name, is_X):
        original = getattr(module, name)

        def spy(*args, **kwargs):
            if is_X(args, kwargs):
                checks.append(f"{module.__name__}.{name}")
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)

    counting(sk_validation, "_assert_all_finite", lambda a, kw: kw.get("input_name", "") == "X")
    for module in (training, estimator):
        counting(module, "check_finite", lambda a, kw: a[2].startswith("X"))
    X, Y = flower_data
    bc.BackpropClassifier(max_iter=5, standardize=True).fit(X.T, Y[0])
    assert checks == ["backprop_core.training.check_finite"]


@pytest.mark.parametrize("entry", ["estimator", "nn_model", "fit"])
def test_every_entry_point_refuses_X_that_is_not_finite(flower_data, entry):
    X, Y = flower_data
    X = X.copy()
    X[1, 7] = np.nan
    with pytest.raises(bc.InvalidInputError, match="Input X contains NaN"):
        if entry == "estimator":
            bc.BackpropClassifier(max_iter=5).fit(X.T, Y[0])
        elif entry == "nn_model":
            bc.nn_model(X, Y, 4, 5)
        else:
            training.fit(X, Y, hidden_units=4, activation=TANH, learning_rate=1.2, num_iterations=5)
