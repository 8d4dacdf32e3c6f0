"""Tasks: registry (task folders + config), preparation (public/private split), metrics, grading, rating."""

from src.tasks.grading import Grade, grade
from src.tasks.metrics import Metric, get_metric, metric_names
from src.tasks.prepare import PreparedTask, prepare_task
from src.tasks.rating import Rating, bootstrap_scores, rate
from src.tasks.registry import Task, load_suite, load_task

__all__ = [
    "Grade",
    "Metric",
    "PreparedTask",
    "Rating",
    "Task",
    "bootstrap_scores",
    "get_metric",
    "grade",
    "load_suite",
    "load_task",
    "metric_names",
    "prepare_task",
    "rate",
]
