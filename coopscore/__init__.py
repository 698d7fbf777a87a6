"""coopscore: settings (`coopscore.settings`, the bottom layer) and the command line (`coopscore.cli`,
the top layer). Imports nothing, so `import coopscore.settings` loads no other layer."""
