"""Settings: validation, environment parsing, the generated settings table."""

from __future__ import annotations

import dataclasses

import pytest

from broadcaster import ConfigError, OverflowPolicy, Settings, backend_from_url
from broadcaster._config import setting_fields, settings_markdown


def test_settings_defaults_are_valid_and_use_memory():
    settings = Settings()
    assert settings.redis_url is None
    assert settings.backend_url == "memory://"
    assert settings.overflow is OverflowPolicy.DISCONNECT
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8000, 1)


def test_settings_backend_url_is_the_redis_url_when_set():
    assert Settings(redis_url="redis://127.0.0.1:6379/0").backend_url == "redis://127.0.0.1:6379/0"


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().port = 1  # type: ignore[misc]


def test_settings_overflow_accepts_its_text():
    assert Settings(overflow="drop-oldest").overflow is OverflowPolicy.DROP_OLDEST  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"port": 0}, "port"),
        ({"port": 70000}, "port"),
        ({"workers": 0}, "workers"),
        ({"queue_size": 0}, "queue_size"),
        ({"queue_size": 20_000}, "max_queue_size"),
        ({"max_queue_size": 0}, "max_queue_size"),
        ({"queue_bytes": 0}, "queue_bytes"),
        ({"max_event_bytes": -1}, "max_event_bytes"),
        ({"max_body_bytes": 0}, "max_body_bytes"),
        ({"history_size": 0}, "history_size"),
        ({"max_topics_per_stream": 0}, "max_topics_per_stream"),
        ({"heartbeat_s": 0}, "heartbeat_s"),
        ({"heartbeat_s": float("nan")}, "heartbeat_s"),
        ({"send_timeout_s": -1.0}, "send_timeout_s"),
        ({"history_ttl_s": 0.0}, "history_ttl_s"),
        ({"history_ttl_s": float("inf")}, "history_ttl_s"),
        ({"shutdown_grace_s": -0.5}, "shutdown_grace_s"),
        ({"shutdown_grace_s": float("nan")}, "shutdown_grace_s"),
        ({"retry_ms": -1}, "retry_ms"),
        ({"overflow": "sometimes"}, "overflow"),
        ({"redis_url": "http://127.0.0.1:6379"}, "redis_url"),
        ({"redis_url": "127.0.0.1:6379"}, "redis_url"),
        ({"workers": 2}, "workers"),
        ({"log_level": "verbose"}, "log_level"),
    ],
    ids=[
        "port-zero",
        "port-too-high",
        "workers-zero",
        "queue-size-zero",
        "queue-size-over-max",
        "max-queue-size-zero",
        "queue-bytes-zero",
        "max-event-bytes-negative",
        "max-body-bytes-zero",
        "history-size-zero",
        "max-topics-zero",
        "heartbeat-zero",
        "heartbeat-nan",
        "send-timeout-negative",
        "history-ttl-zero",
        "history-ttl-infinite",
        "shutdown-grace-negative",
        "shutdown-grace-nan",
        "retry-negative",
        "overflow-unknown",
        "redis-url-http",
        "redis-url-no-scheme",
        "workers-without-redis",
        "log-level-unknown",
    ],
)
def test_settings_invalid_value_raises_config_error_naming_it(changes, named):
    with pytest.raises(ConfigError) as info:
        Settings(**changes)
    assert isinstance(info.value, ValueError)
    assert named in str(info.value)


def test_settings_unknown_overflow_lists_the_choices():
    with pytest.raises(ConfigError, match="disconnect, drop-oldest, drop-newest"):
        Settings(overflow="sometimes")  # type: ignore[arg-type]


def test_settings_workers_above_one_need_redis():
    with pytest.raises(ConfigError) as info:
        Settings(workers=4)
    message = str(info.value)
    assert "Redis" in message and "--redis-url" in message and "BROADCASTER_REDIS_URL" in message
    assert Settings(workers=4, redis_url="redis://127.0.0.1:6379/0").workers == 4


def test_settings_replace_validates_again():
    settings = Settings()
    assert settings.replace(queue_size=5).queue_size == 5
    with pytest.raises(ConfigError, match="queue_size"):
        settings.replace(queue_size=0)


def test_settings_from_env_parses_every_type():
    settings = Settings.from_env(
        {
            "BROADCASTER_PORT": "9001",
            "BROADCASTER_HEARTBEAT_S": "2.5",
            "BROADCASTER_OVERFLOW": "drop-newest",
            "BROADCASTER_REDIS_URL": "redis://127.0.0.1:1/0",
            "BROADCASTER_LOG_LEVEL": "DEBUG",
            "UNRELATED": "x",
        }
    )
    assert settings.port == 9001
    assert settings.heartbeat_s == 2.5
    assert settings.overflow is OverflowPolicy.DROP_NEWEST
    assert settings.redis_url == "redis://127.0.0.1:1/0"
    assert settings.log_level == "DEBUG"


def test_settings_from_env_ignores_empty_variables():
    assert Settings.from_env({"BROADCASTER_PORT": "", "BROADCASTER_REDIS_URL": ""}) == Settings()


def test_settings_from_env_overrides_win_and_none_is_ignored():
    settings = Settings.from_env(
        {"BROADCASTER_PORT": "9001", "BROADCASTER_QUEUE_SIZE": "5"}, port=9002, queue_size=None
    )
    assert (settings.port, settings.queue_size) == (9002, 5)


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("BROADCASTER_QUEUE_SIZE", "abc"),
        ("BROADCASTER_PORT", "80.5"),
        ("BROADCASTER_WORKERS", "two"),
        ("BROADCASTER_HEARTBEAT_S", "soon"),
    ],
    ids=["queue-size-abc", "port-float", "workers-word", "heartbeat-word"],
)
def test_settings_from_env_unparsable_value_names_the_variable(variable, raw):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({variable: raw})
    assert variable in str(info.value)
    assert repr(raw) in str(info.value)


def test_settings_from_env_unknown_overflow_names_the_setting():
    with pytest.raises(ConfigError, match="BROADCASTER_OVERFLOW must be one of"):
        Settings.from_env({"BROADCASTER_OVERFLOW": "sometimes"})


def test_settings_from_env_invalid_value_names_the_setting():
    with pytest.raises(ConfigError, match="BROADCASTER_QUEUE_SIZE must be at least 1, got 0"):
        Settings.from_env({"BROADCASTER_QUEUE_SIZE": "0"})


def test_settings_from_env_workers_without_redis_refused():
    with pytest.raises(ConfigError, match="workers > 1 needs a Redis URL"):
        Settings.from_env({"BROADCASTER_WORKERS": "2"})


def test_settings_from_env_reads_os_environ(monkeypatch):
    monkeypatch.setenv("BROADCASTER_QUEUE_SIZE", "7")
    assert Settings.from_env().queue_size == 7


def test_settings_markdown_has_one_row_per_setting():
    table = settings_markdown().splitlines()
    fields = setting_fields()
    assert table[0] == "| flag | environment variable | default | meaning |"
    assert len(table) == 2 + len(fields)
    for row, f in zip(table[2:], fields, strict=True):
        flag = "--" + f.name.replace("_", "-")
        assert row.startswith(f"| `{flag}` | `BROADCASTER_{f.name.upper()}` |")
        assert f.metadata["help"] in row
    assert "| `--redis-url` | `BROADCASTER_REDIS_URL` | unset |" in settings_markdown()
    assert "| `--queue-size` | `BROADCASTER_QUEUE_SIZE` | `1000` |" in settings_markdown()


def test_backend_from_url_unknown_scheme_names_the_supported_ones():
    with pytest.raises(ConfigError) as info:
        backend_from_url("kafka://127.0.0.1")
    assert "kafka://" in str(info.value)
    for scheme in ("memory://", "redis://", "rediss://"):
        assert scheme in str(info.value)


def test_backend_from_url_memory_takes_retention_settings():
    from broadcaster.backends.memory import MemoryBackend

    backend = backend_from_url("memory://", Settings(history_size=7, history_ttl_s=2.0))
    assert isinstance(backend, MemoryBackend)
    assert (backend.history_size, backend.history_ttl_ms) == (7, 2000)
