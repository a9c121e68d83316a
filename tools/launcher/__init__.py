"""The local cluster launcher behind tools/mailgrid (standard library only)."""
