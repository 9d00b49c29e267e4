"""l1ad.trigger: events and L1 inputs, data generation, QAT models, training, anomaly scores, thresholds and rates."""
from .events import N_INPUTS, N_OBJECTS, OBJECT_SLOTS, OFFLINE_FIELDS, EventBatch, EventDataError

__all__ = ["EventBatch", "EventDataError", "N_INPUTS", "N_OBJECTS", "OBJECT_SLOTS", "OFFLINE_FIELDS"]
