"""Use cases that span the stages, each a module the CLI calls: fold, simulate, budget, analyze and
the demo. Stages below never import each other sideways to run a use case; they meet here."""
