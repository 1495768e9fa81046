from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from django_demo import views

urlpatterns = [
    path("", views.home, name="home"),
    path("note/", views.note, name="note"),
    path("password/", views.password, name="password"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]

# A session store outage answers 503 (with Retry-After), not Django's 500.
handler500 = "wsgi_session.django.engine.server_error"
