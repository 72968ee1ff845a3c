"""Builder functions behind ``brew`` and ``CNNModelHelper``, one module per family."""
