from django.urls import path

from . import views

app_name = "shop"

urlpatterns = [
    path("products/<int:pk>/", views.product_detail, name="product-detail"),
    path("orders/", views.place_order, name="place-order"),
]
