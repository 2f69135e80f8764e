"""What comes in and goes out: users' model files read safely, data sets, atomic writes."""
