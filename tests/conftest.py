pytest_plugins = ["tests.db_fixtures", "tests.live_fixtures", "tests.node_fixtures"]
