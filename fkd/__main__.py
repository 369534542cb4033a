from fkd.cli import main

raise SystemExit(main())
