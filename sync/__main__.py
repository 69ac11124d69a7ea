from sync.cli.main import main

raise SystemExit(main())
