"""Vision encoders and policy learning (behaviour cloning, DAgger, SB3 PPO/SAC)."""
