from evc.train.cli import main

raise SystemExit(main())
