from gendd.cli import entry

entry()
