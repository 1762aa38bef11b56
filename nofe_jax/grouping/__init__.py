"""Host-side numpy/scipy grouping: which classes go together. Never imports jax.

The names a config may choose are declared here, so checking a config imports no scipy.
"""

# DMDE's category nodes (`dmde.ontology`, ontology.build_ontology).
ONTOLOGY_SOURCES = ('semantic', 'visual', 'coarse', 'random')
# DeepME's groups (`deepme.groups`): soft spectral clustering of the semantic similarity, or
# random groups of the same sizes (the paper's NoSSC ablation).
DEEPME_GROUPINGS = ('ssc', 'random')
