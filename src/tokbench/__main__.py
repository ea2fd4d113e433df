from tokbench.cli import main

raise SystemExit(main())
