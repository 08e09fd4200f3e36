"""The project's `flask` commands: the command group and each command, imported only when it is run."""
