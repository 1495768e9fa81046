from __future__ import annotations

from dbtests import views
from django.urls import path

urlpatterns = [
    path("count", views.count),
    path("read", views.read),
    path("save-then-fail", views.save_then_fail),
    path("save-while-another-saves", views.save_while_another_saves),
]
