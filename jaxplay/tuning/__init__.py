"""The playbook's procedures that derive a study from another: lineage actions (refine, exploit,
promote, rerun, reseed, warmup, clip: actions), the max_train_steps sweep (steps, estimated by
fit), each a registry entry (derivation, lineage), and the batch-size probe (batch_size)."""
