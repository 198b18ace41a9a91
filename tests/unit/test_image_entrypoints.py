"""The mariadb/mysql and redis images' entrypoints: the official entrypoints' rules, without a server.

The servers themselves run in tests/e2e/test_images_services.py; here are the decisions that
come before: which command runs, which environment variable wins, which message a missing
setting gives, and the set-up SQL.
"""

from __future__ import annotations

import pathlib

import pytest

from kubelite.images import mariadb, redis
from kubelite.images.mariadb import EntrypointError, Settings

CONFIG = f"--defaults-file={mariadb.IMAGE_CONFIG_FILE}"


@pytest.mark.parametrize(("image", "command", "argv"), [
    ("mariadb", ["mariadbd"], ["mariadbd", CONFIG]),
    ("mariadb", ["--character-set-server=utf8mb4"], ["mariadbd", CONFIG, "--character-set-server=utf8mb4"]),
    ("mariadb", ["mysqld", "--port=3307"], ["mysqld", CONFIG, "--port=3307"]),
    ("mysql", ["--max-connections=10"], ["mysqld", CONFIG, "--max-connections=10"]),
    ("mariadb", ["mariadbd", "--defaults-file=/etc/my.cnf"], ["mariadbd", "--defaults-file=/etc/my.cnf"]),
    ("mariadb", ["mariadbd", "--version"], None),
    ("mariadb", ["bash", "-c", "true"], None),
    ("mysql", ["mariadbd"], None),  # the mysql image's entrypoint only sets up "mysqld"
])
def test_server_command(image: str, command: list[str], argv: list[str] | None) -> None:
    assert mariadb.server_argv(image, command) == argv


def test_mariadb_variables_win_over_mysql_ones_and_files_are_read(tmp_path: pathlib.Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    s = mariadb.settings("mariadb", {
        "MYSQL_ROOT_PASSWORD": "mysql-root", "MARIADB_ROOT_PASSWORD": "maria-root",
        "MYSQL_DATABASE": "shop", "MYSQL_USER": "app", "MARIADB_PASSWORD_FILE": str(secret),
        "MYSQL_ALLOW_EMPTY_PASSWORD": "yes",
    })
    assert s == Settings(root_password="maria-root", allow_empty_root_password="yes", database="shop",
                         user="app", password="from-file")
    mysql = mariadb.settings("mysql", {"MARIADB_ROOT_PASSWORD": "ignored", "MYSQL_ROOT_HOST": "10.%"})
    assert mysql == Settings(root_host="10.%")
    with pytest.raises(EntrypointError, match=r"^Both MYSQL_PASSWORD and MYSQL_PASSWORD_FILE are set"):
        mariadb.settings("mariadb", {"MYSQL_PASSWORD": "a", "MYSQL_PASSWORD_FILE": str(secret)})


def test_a_new_database_needs_a_root_password_option() -> None:
    with pytest.raises(EntrypointError) as err:
        mariadb.verify("mariadb", Settings())
    assert str(err.value) == (
        "Database is uninitialized and password option is not specified\n\tYou need to specify one of "
        "MARIADB_ROOT_PASSWORD, MARIADB_ROOT_PASSWORD_HASH, MARIADB_ALLOW_EMPTY_ROOT_PASSWORD and "
        "MARIADB_RANDOM_ROOT_PASSWORD"
    )
    with pytest.raises(EntrypointError) as err:
        mariadb.verify("mysql", Settings())
    assert str(err.value) == (
        "Database is uninitialized and password option is not specified\n"
        "    You need to specify one of the following as an environment variable:\n"
        "    - MYSQL_ROOT_PASSWORD\n    - MYSQL_ALLOW_EMPTY_PASSWORD\n    - MYSQL_RANDOM_ROOT_PASSWORD"
    )
    with pytest.raises(EntrypointError, match=r'^MYSQL_USER="root", MYSQL_USER and MYSQL_PASSWORD are for'):
        mariadb.verify("mysql", Settings(root_password="x", user="root", password="y"))
    with pytest.raises(EntrypointError, match=r"^Cannot specify MARIADB_ROOT_PASSWORD_HASH and another"):
        mariadb.verify("mariadb", Settings(root_password="x", root_password_hash="*AB"))
    mariadb.verify("mariadb", Settings(random_root_password="1"))
    mariadb.verify("mysql", Settings(allow_empty_root_password="yes"))


def test_setup_sql() -> None:
    sql = mariadb.setup_sql(Settings(root_password="r'oot\\", database="my_app", user="app", password="p\nw"))
    assert "SET PASSWORD FOR 'root'@'localhost'= PASSWORD('r\\'oot\\\\');" in sql
    assert "CREATE USER 'root'@'%' IDENTIFIED BY 'r\\'oot\\\\' ;" in sql
    assert "CREATE DATABASE IF NOT EXISTS `my_app`;" in sql
    assert "CREATE USER 'app'@'%' IDENTIFIED BY 'p\\nw';" in sql
    assert "GRANT ALL ON `my\\_app`.* TO 'app'@'%';" in sql  # _ is a wildcard in a grant's schema
    local = mariadb.setup_sql(Settings(root_host="localhost", user="app"))
    assert "'root'@'%'" not in local and "CREATE USER 'app'" not in local  # no password: no user


@pytest.mark.parametrize(("command", "argv"), [
    ([], ["redis-server", "--protected-mode", "no"]),
    (["redis-server"], ["redis-server", "--protected-mode", "no"]),
    (["--appendonly", "yes"], ["redis-server", "--protected-mode", "no", "--appendonly", "yes"]),
    (["/usr/local/bin/redis-server", "--port", "7000"], ["redis-server", "--protected-mode", "no", "--port", "7000"]),
    (["redis-cli", "ping"], ["redis-cli", "ping"]),
])
def test_redis_command(command: list[str], argv: list[str]) -> None:
    assert redis.server_argv(command) == argv


def test_redis_config_file_decides_protected_mode(tmp_path: pathlib.Path) -> None:
    silent = tmp_path / "plain.conf"
    silent.write_text("maxmemory 10mb\n")
    assert redis.server_argv([str(silent)]) == ["redis-server", str(silent), "--protected-mode", "no"]
    explicit = tmp_path / "protected.conf"
    explicit.write_text("# mine\nprotected-mode yes\n")
    assert redis.server_argv([str(explicit), "--port", "1"]) == ["redis-server", str(explicit), "--port", "1"]
