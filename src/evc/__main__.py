from evc.cli.main import main

raise SystemExit(main())
