"""Reading and writing files.

- :mod:`xlatent.io.ingest`: ``read_spectra`` (files, directories, globs -> one SpectrumSet) and
  ``ingest_paths`` (the same batch, with every skipped file and its reason).
- :mod:`xlatent.io.registry`: the one table of input formats, ``identify_format`` and ``read``.
- One module per input format: :mod:`~xlatent.io.pha` (OGIP PHA),
  :mod:`~xlatent.io.mmu` (Multimodal Universe HDF5), :mod:`~xlatent.io.spectrumset_hdf5`.
- :mod:`xlatent.io.ogip_response`: OGIP ARF/RMF readers (into :mod:`xlatent.instrument`
  objects) and their file cache; :mod:`xlatent.io.ogip_write`: OGIP PHA/ARF/RMF writers;
  :mod:`xlatent.io.fastfits`: the capped, header-checked FITS reader; :mod:`xlatent.io.csc`:
  Chandra Source Catalog access.
"""
