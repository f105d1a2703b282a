from helpers import double


class Store:
    def total(self, items):
        result = []
        for item in items:
            result.append(double(item))
        return result

    def name(self):
        return "store"


def main():
    shop = Store()
    print(shop.total([1, 2, 3]))
