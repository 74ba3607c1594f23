from loopml.cli.app import entry

entry()
