"""How a record is made: the session, devices, the step harness, training, counting."""
