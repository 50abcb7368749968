"""iMF's command-line tools: imf-cache-embeddings."""
