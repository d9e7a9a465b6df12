"""The evidence ICT shows a supplier: the signed report of a period (``report``, ``render``,
``charts``), its Ed25519 signature (``signing``) and the signed daily audit checkpoints that
make a shortened or re-written audit chain detectable (``checkpoint``)."""
