"""What a run is and says: the record, metrics, options, profiles and the files."""
