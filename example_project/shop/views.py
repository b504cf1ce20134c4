from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET, require_POST

from .models import Order, Product
from .services import reserve_stock


@require_GET
def product_detail(request: HttpRequest, pk: int) -> JsonResponse:
    product = get_object_or_404(Product, pk=pk)
    return JsonResponse({"name": product.name, "stock": product.stock})


@require_POST
def place_order(request: HttpRequest) -> JsonResponse:
    """Reserve stock and record an Order from form fields product, quantity."""
    try:
        product_id = int(request.POST["product"])
        quantity = int(request.POST["quantity"])
    except (KeyError, ValueError):
        return JsonResponse({"error": "product and quantity required"}, status=400)
    if quantity < 1:
        return JsonResponse({"error": "quantity must be positive"}, status=400)
    product = get_object_or_404(Product, pk=product_id)
    # Atomic so a failed Order insert does not leave stock reserved for nobody.
    with transaction.atomic():
        if not reserve_stock(product.pk, quantity):
            return JsonResponse({"error": "insufficient stock"}, status=409)
        order = Order.objects.create(product=product, quantity=quantity)
    return JsonResponse({"order": order.pk, "quantity": quantity}, status=201)
