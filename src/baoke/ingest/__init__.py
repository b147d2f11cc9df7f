"""Import of DMS exports: readers, header mapping, validation, quarantine and loading."""
