"""Provider sandbox: stateful stand-ins for the engine's providers (see ``sandbox.app``)."""
