"""``python -m concurrent_runner durations merge OUT IN [IN ...]``."""

from concurrent_runner.planning.durations import main

raise SystemExit(main())
