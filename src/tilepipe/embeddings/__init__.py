"""Foundation-model embeddings (TESSERA, AlphaEarth) mosaicked onto a tile's grid."""
