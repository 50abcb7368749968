"""What the repository's examples, benchmarks and tests share, installed so that none of them edits the import
path."""
